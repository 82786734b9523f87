"""The low-rank regressor: a naive per-point, per-frame sum, gradients to both parts, and the model around it."""

import torch

from conftest import assert_close
from mmtalker.models.mmtalker import LowRankRegressor
from test_model import C, small_model


def test_matches_naive_sum_of_basis_fields():
    torch.manual_seed(0)
    reg = LowRankRegressor(point_dim=5, frame_dim=4, hidden=8, rank=3)
    torch.nn.init.normal_(reg.frame_in[-1].weight)  # undo the "no motion" start
    points, frames = torch.randn(2, 6, 5), torch.randn(2, 4, 4)
    pp, fp = reg.point_part(points), reg.frame_part(frames)
    out = reg(pp, fp)
    assert out.shape == (2, 4, 6, 3)
    naive = torch.zeros_like(out)
    for b in range(2):
        for t in range(4):
            for p in range(6):
                for k in range(3):
                    naive[b, t, p] += fp[b, t, k] * pp[b, p].view(3, 3)[k]
    assert_close(out.detach().numpy(), naive.detach().numpy(), atol=1e-6, what="low-rank decode")


def test_starts_still_and_both_parts_learn():
    torch.manual_seed(1)
    reg = LowRankRegressor(point_dim=5, frame_dim=4, hidden=8, rank=3)
    points, frames = torch.randn(1, 6, 5), torch.randn(1, 4, 4)
    out = reg(reg.point_part(points), reg.frame_part(frames))
    assert torch.count_nonzero(out) == 0  # zero coefficients at the start: no motion
    (out - 1).pow(2).mean().backward()
    assert reg.frame_in[-1].weight.grad.abs().sum() > 0  # the coefficients learn first, then the basis


def test_model_with_low_rank_regressor_agrees_with_itself():
    model = small_model(regressor_rank=4)
    torch.nn.init.normal_(model.regressor.frame_in[-1].weight, std=0.5)
    audio, subject = torch.randn(1, 7, C), torch.tensor([0])
    with torch.no_grad():
        dense = model.predict_vertices(audio, subject, chunk_frames=3)
        whole = model.predict_vertices(audio, subject, chunk_frames=100)
    assert dense.shape == (1, 7, model.num_vertices, 3) and dense.abs().sum() > 0
    assert_close(dense.numpy(), whole.numpy(), atol=1e-7, what="chunked decode")
