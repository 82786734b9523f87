"""Mesh graph and residual GCN (mmtalker.mesh.graph): naive dense references, equivariance, speed."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from conftest import assert_close
from mmtalker.mesh.graph import GraphConv, ResidualGCN, mesh_adjacency, propagate


def grid_faces(n):
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    return np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])


def naive_adjacency(faces, num_vertices):
    """Loops: A from the face edges, then D^-1/2 (A + I) D^-1/2."""
    a = np.eye(num_vertices)
    for f in faces:
        for i in range(3):
            for j in range(3):
                a[f[i], f[j]] = 1.0
    d = a.sum(1)
    return a / np.sqrt(np.outer(d, d))


def test_adjacency_matches_naive():
    faces = np.array([[0, 1, 2], [0, 2, 3], [2, 1, 0], [3, 4, 4]])  # a repeated face and a degenerate one
    adj = mesh_adjacency(faces, 6)  # vertex 5 is isolated
    assert adj.is_sparse and adj.is_coalesced() and adj.shape == (6, 6)
    assert_close(adj.to_dense().numpy(), naive_adjacency(faces, 6), what="Â")
    # hand-computed entry: vertex 0 has neighbours 1,2,3 (d=4), vertex 1 has 0,2 (d=3)
    assert np.isclose(adj.to_dense()[0, 1].item(), 1 / np.sqrt(12))
    assert adj.to_dense()[5, 5].item() == 1.0


def test_adjacency_properties_on_a_grid():
    faces = grid_faces(6)
    dense = mesh_adjacency(faces, 49, dtype=torch.float64).to_dense()
    assert torch.allclose(dense, dense.T)
    eig = torch.linalg.eigvalsh(dense)
    assert eig.max() <= 1 + 1e-9 and eig.min() >= -1 - 1e-9  # normalised: spectrum in [-1, 1]
    with pytest.raises(ValueError):
        mesh_adjacency(faces, 10)


def test_graph_conv_matches_dense_and_handles_batches():
    torch.manual_seed(0)
    faces = grid_faces(4)
    adj = mesh_adjacency(faces, 25)
    dense = torch.tensor(naive_adjacency(faces, 25), dtype=torch.float32)
    conv = GraphConv(5, 7)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(3, 2, 25, 5)  # two batch dims
    expected = dense @ x @ conv.linear.weight.T + conv.bias
    assert_close(conv(x, adj).detach().numpy(), expected.detach().numpy(), atol=1e-5, what="GraphConv")
    assert_close(conv(x[1, 0], adj).detach().numpy(), expected[1, 0].detach().numpy(), atol=1e-5, what="(V,C)")
    xd = x.double()  # a float64 input works with a float32 adjacency
    assert_close(propagate(adj, xd).numpy(), (dense.double() @ xd).numpy(), atol=1e-6, what="propagate f64")


def test_propagate_gradcheck():
    faces = grid_faces(3)
    adj = mesh_adjacency(faces, 16, dtype=torch.float64)
    x = torch.randn(2, 16, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: propagate(adj, t), (x,))


def test_residual_gcn_is_permutation_equivariant():
    torch.manual_seed(1)
    faces = grid_faces(5)
    v = 36
    net = ResidualGCN(3, 16, 4, num_layers=3)
    x = torch.randn(2, v, 3)
    out = net(x, mesh_adjacency(faces, v))
    perm = torch.randperm(v)  # new vertex k is old vertex perm[k]
    inverse = torch.argsort(perm)
    out_perm = net(x[:, perm], mesh_adjacency(inverse.numpy()[faces], v))
    assert out.shape == (2, v, 4)
    assert_close(out_perm.detach().numpy(), out[:, perm].detach().numpy(), atol=1e-5, what="relabelled output")
    # a vertex's output depends only on its (num_layers + 1)-ring: far vertices do not change it
    x2 = x.clone()
    x2[:, 35] += 1.0  # the opposite corner of vertex 0
    assert torch.allclose(net(x2, mesh_adjacency(faces, v))[:, 0], out[:, 0])


def test_residual_gcn_face_sized_forward_and_training_step():
    # speed is measured in benchmarks/, not asserted here (the CPU is shared in CI)
    torch.manual_seed(2)
    faces = grid_faces(70)  # 5041 vertices
    adj = mesh_adjacency(faces, 71 * 71)
    net = ResidualGCN(3, 64, 64, num_layers=4)
    x = torch.randn(71 * 71, 3)
    with torch.no_grad():
        out = net(x, adj)
    assert out.shape == (71 * 71, 64) and torch.isfinite(out).all()
    loss = net(x, adj).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_residual_gcn_trains_under_bf16_autocast():
    """Mixed precision (bf16 autocast, as GPU training runs): bf16 in, bf16 out, finite gradients, close to
    float32. (The sparse product runs in float32 with autocast off; the CUDA case is in tests/test_gpu.py.)"""
    torch.manual_seed(3)
    faces = grid_faces(6)
    adj = mesh_adjacency(faces, 49)
    net = ResidualGCN(3, 16, 16, num_layers=2)
    x = torch.randn(2, 49, 3)
    reference = net(x, adj)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, adj)
        assert propagate(adj, x.bfloat16()).dtype == torch.bfloat16
    out.float().pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert_close(out.detach().float(), reference.detach(), atol=0.05 * float(reference.detach().abs().max()))
