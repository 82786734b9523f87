"""Training losses against naive loops and hand-computed cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from conftest import assert_close
from mmtalker.train.losses import (
    frame_max_loss,
    point_errors,
    reconstruction_loss,
    region_point_weight,
    velocity_loss,
    vertex_region_weight,
)
from mmtalker.mesh.sampling import vertex_points


def _naive_recon(pred, target, weight, mask, region_w):
    total, frames = 0.0, 0
    B, T, P, _ = pred.shape
    for b, t in itertools.product(range(B), range(T)):
        if not mask[b, t]:
            continue
        frames += 1
        total += sum(float(weight[p] * region_w[p] * ((pred[b, t, p] - target[b, t, p]) ** 2).sum()) for p in range(P)) / P
    return total / frames


def _naive_velocity(pred, target, weight, mask, region_w):
    total, pairs = 0.0, 0
    B, T, P, _ = pred.shape
    for b, t in itertools.product(range(B), range(T - 1)):
        if not (mask[b, t] and mask[b, t + 1]):
            continue
        pairs += 1
        dp = pred[b, t + 1] - pred[b, t]
        dt = target[b, t + 1] - target[b, t]
        total += sum(float(weight[p] * region_w[p] * ((dp[p] - dt[p]) ** 2).sum()) for p in range(P)) / P
    return total / pairs


def _case(seed=0, B=3, T=5, P=7):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(B, T, P, 3, generator=g)
    target = torch.randn(B, T, P, 3, generator=g)
    weight = torch.rand(P, generator=g) + 0.5
    region_w = torch.rand(P, generator=g) + 1.0
    lengths = [T, 2, 1][:B]
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    return pred, target, weight, mask, region_w


def test_reconstruction_matches_naive_loop_with_ragged_mask():
    pred, target, weight, mask, region_w = _case()
    got = reconstruction_loss(pred, target, weight, mask, region_w)
    assert_close(got.item(), _naive_recon(pred, target, weight, mask, region_w), rtol=1e-5, what="reconstruction")


def test_velocity_matches_naive_loop_and_ignores_padding_pairs():
    pred, target, weight, mask, region_w = _case(seed=1)
    got = velocity_loss(pred, target, weight, mask, region_w)
    assert_close(got.item(), _naive_velocity(pred, target, weight, mask, region_w), rtol=1e-5, what="velocity")
    # changing a padded frame changes nothing
    pred2 = pred.clone()
    pred2[1, 3:] += 100.0
    assert_close(velocity_loss(pred2, target, weight, mask, region_w).item(), got.item(), what="velocity with padding changed")
    assert_close(reconstruction_loss(pred2, target, weight, mask, region_w).item(),
                 reconstruction_loss(pred, target, weight, mask, region_w).item(), what="reconstruction with padding changed")


def test_velocity_is_zero_for_single_frames_and_constant_offsets():
    pred, target, weight, _, _ = _case(T=1)
    assert velocity_loss(pred, target, weight).item() == 0.0
    pred, target, weight, _, _ = _case(T=4)
    shifted = target + torch.tensor([0.3, -1.0, 2.0])  # same motion, constant offset
    assert velocity_loss(shifted, target, weight).item() < 1e-10
    assert reconstruction_loss(shifted, target, weight).item() > 1.0


def test_importance_weights_reach_no_gradient_through_reconstruction():
    pred, target, weight, mask, region_w = _case()
    weight.requires_grad_(True)
    loss = reconstruction_loss(pred, target, weight, mask, region_w) + velocity_loss(pred, target, weight, mask, region_w)
    assert not loss.requires_grad  # only the (constant) weights could carry a gradient: detached


def test_point_errors_hand_case():
    pred = torch.zeros(1, 1, 2, 3)
    target = torch.tensor([[[[1.0, 2.0, 2.0], [0.0, 0.0, 3.0]]]])
    assert point_errors(pred, target).tolist() == [[[9.0, 9.0]]]
    assert point_errors(pred, target, torch.tensor([2.0, 0.5])).tolist() == [[[18.0, 4.5]]]


def test_region_weights_hand_case():
    w = vertex_region_weight(5, {"lips": torch.tensor([1, 2]), "eyes": torch.tensor([2, 4])}, {"lips": 1.0, "eyes": 0.5})
    assert w.tolist() == [1.0, 2.0, 2.5, 1.0, 1.5]
    faces = torch.tensor([[0, 1, 2], [2, 3, 4]])
    bary = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    got = region_point_weight(w, faces, torch.tensor([0, 1]), bary)
    assert_close(got.numpy(), np.array([0.2 * 1 + 0.3 * 2 + 0.5 * 2.5, 2.5]), what="point weights")


def test_frame_max_loss_hand_case():
    pred = torch.zeros(2, 2, 3, 3)
    target = torch.zeros(2, 2, 3, 3)
    target[0, 0, 1, 0] = 2.0  # clip 0, frame 0: errors 0, 4, 0 -> 4
    target[0, 1, :, 2] = torch.tensor([1.0, 3.0, 2.0])  # frame 1: 1, 9, 4 -> 9
    target[1, 0, 2, 1] = 1.0  # clip 1, frame 0: -> 1
    target[1, 1, 0, 0] = 10.0  # clip 1, frame 1 is padding
    mask = torch.tensor([[True, True], [True, False]])
    assert frame_max_loss(pred, target, mask).item() == pytest.approx((4 + 9 + 1) / 3)
    assert frame_max_loss(pred, target).item() == pytest.approx((4 + 9 + 1 + 100) / 4)


def test_vertex_points_land_on_their_vertices():
    faces = torch.tensor([[0, 1, 2], [2, 1, 3], [3, 4, 2]])
    face_of, bary = vertex_points(faces, 5)
    assert bary.sum(1).tolist() == [1.0] * 5 and (bary.max(1).values == 1).all()
    assert (faces[face_of][bary.bool()] == torch.arange(5)).all()  # the corner with weight 1 is the vertex
    positions = torch.randn(5, 3)
    assert_close((positions[faces[face_of]] * bary[..., None]).sum(1).numpy(), positions.numpy(), what="vertex points")
    with pytest.raises(ValueError, match="1 vertices lie in no face"):
        vertex_points(faces, 6)
