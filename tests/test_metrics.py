"""The metrics against hand-computed cases, naive loops, and torchmetrics' independent LipVertexError."""

import numpy as np
import pytest
import torch

from mmtalker.eval import metrics
from conftest import assert_close


def _naive_region_error(pred, gt, idx):
    per_frame = []
    for t in range(gt.shape[0]):
        worst = 0.0
        for v in set(int(i) for i in idx):
            d = sum((float(pred[t, v, k]) - float(gt[t, v, k])) ** 2 for k in range(3))
            worst = max(worst, d)
        per_frame.append(worst)
    return sum(per_frame) / len(per_frame)


def test_lve_hand_computed():
    gt = np.zeros((2, 3, 3))
    pred = np.zeros((2, 3, 3))
    pred[0, 0] = [1.0, 0, 0]  # frame 0: squared errors 1, 0, 4 -> max 4
    pred[0, 2] = [0, 2.0, 0]
    pred[1, 1] = [0, 0, 3.0]  # frame 1: squared errors 0, 9, 0 -> max 9
    assert metrics.lve(pred, gt, [0, 1, 2]) == pytest.approx(6.5)
    assert metrics.lve(pred, gt, [0]) == pytest.approx(0.5)  # frames: 1, 0
    # duplicates in a region file change nothing
    assert metrics.lve(pred, gt, [0, 0, 1, 2, 2]) == pytest.approx(6.5)


@pytest.mark.parametrize("T,V", [(1, 4), (7, 50), (30, 200)])
def test_lve_eve_match_naive_and_torchmetrics(T, V):
    from torchmetrics.functional.multimodal import lip_vertex_error

    rng = np.random.default_rng(T * V)
    gt = rng.normal(size=(T, V, 3))
    pred = gt + 0.1 * rng.normal(size=(T, V, 3))
    lips = rng.choice(V, size=max(2, V // 5), replace=False)
    eyes = rng.choice(V, size=max(2, V // 7), replace=False)
    ours = metrics.lve(pred, gt, lips)
    assert_close(ours, _naive_region_error(pred, gt, lips), what="LVE vs naive")
    theirs = lip_vertex_error(torch.tensor(pred), torch.tensor(gt), [int(i) for i in lips]).item()
    assert_close(ours, theirs, rtol=1e-10, what="LVE vs torchmetrics")
    assert_close(metrics.eve(pred, gt, eyes), _naive_region_error(pred, gt, eyes), what="EVE vs naive")


def test_fdd_signed_and_hand_computed():
    template = np.zeros((2, 3))
    # truth: vertex 0 moves 0 -> 1 -> 0 along x (squared norms 0,1,0 -> std sqrt(2/9)); vertex 1 still
    gt = np.zeros((3, 2, 3))
    gt[1, 0, 0] = 1.0
    pred = np.zeros((3, 2, 3))  # a prediction with a still upper face
    expected_gt_dyn = np.std([0.0, 1.0, 0.0]) / 2  # mean over the two upper vertices
    assert metrics.upper_face_dynamics(gt, template, [0, 1]) == pytest.approx(expected_gt_dyn)
    assert metrics.fdd(pred, gt, template, [0, 1]) == pytest.approx(expected_gt_dyn)
    assert metrics.fdd(gt, pred, template, [0, 1]) == pytest.approx(-expected_gt_dyn)


def _naive_fdd(pred, gt, template, upper) -> float:
    """FDD of one sequence by the definition, in loops: per upper vertex the population std over frames of
    ||x_t - template||^2, averaged over those vertices; the truth's minus the prediction's."""
    def dynamics(x):
        per_vertex = []
        for v in upper:
            sq = [sum((x[t, v, c] - template[v, c]) ** 2 for c in range(3)) for t in range(len(x))]
            mean = sum(sq) / len(sq)
            per_vertex.append((sum((q - mean) ** 2 for q in sq) / len(sq)) ** 0.5)
        return sum(per_vertex) / len(per_vertex)

    return dynamics(gt) - dynamics(pred)


def test_fdd_and_its_accumulation_match_the_definition_with_a_real_template():
    """A template away from zero and sequences of different lengths: a bug that measured motion from the first
    frame or the mean frame instead of the template, or averaged FDD over frames instead of sequences, fails here."""
    rng = np.random.default_rng(3)
    V, upper = 12, [1, 4, 5, 9]
    template = rng.normal(size=(V, 3))
    acc = metrics.MetricAccumulator(lip_idx=np.arange(3), upper_idx=np.array(upper))
    expected = []
    for T in (4, 9, 17):
        gt = template + 0.1 * rng.normal(size=(T, V, 3)) + 0.3  # offset from the template in every frame
        pred = template + 0.05 * rng.normal(size=(T, V, 3))
        expected.append(_naive_fdd(pred, gt, template, upper))
        assert metrics.fdd(pred, gt, template, upper) == pytest.approx(expected[-1], rel=1e-10)
        acc.add(pred, gt, template=template)
    out = acc.result()
    assert out["fdd"] == pytest.approx(np.mean(expected), rel=1e-10)  # the mean over sequences, not frames
    assert out["fdd_abs"] == pytest.approx(np.mean(np.abs(expected)), rel=1e-10)
    assert metrics.fdd(pred, gt, gt[0], upper) != pytest.approx(expected[-1], rel=1e-3)  # the template matters


def test_mve_is_mean_distance():
    gt = np.zeros((2, 2, 3))
    pred = np.zeros((2, 2, 3))
    pred[0, 0] = [3.0, 4.0, 0]
    assert metrics.mve(pred, gt) == pytest.approx(5.0 / 4)


def test_accumulator_is_frame_weighted():
    rng = np.random.default_rng(0)
    lips = np.arange(5)
    seqs = [(rng.normal(size=(t, 10, 3)), rng.normal(size=(t, 10, 3))) for t in (3, 11)]
    acc = metrics.MetricAccumulator(lip_idx=lips, eye_idx=lips, upper_idx=lips)
    fdds = []
    for pred, gt in seqs:
        acc.add(pred, gt, template=np.zeros((10, 3)))
        fdds.append(metrics.fdd(pred, gt, np.zeros((10, 3)), lips))
    out = acc.result()
    frames = np.concatenate([metrics.region_max_sq_error(p, g, lips) for p, g in seqs])
    assert out["lve"] == pytest.approx(frames.mean())  # not the mean of the two sequences' means
    assert out["lve"] != pytest.approx(np.mean([metrics.lve(p, g, lips) for p, g in seqs]))
    assert out["fdd"] == pytest.approx(np.mean(fdds))
    assert out["fdd_abs"] == pytest.approx(np.mean(np.abs(fdds)))
    assert out["frames"] == 14 and out["sequences"] == 2


def test_bad_shapes_and_regions_are_refused():
    a = np.zeros((5, 4, 3))
    with pytest.raises(ValueError, match="vertices"):
        metrics.lve(a, np.zeros((5, 3, 3)), [0])
    with pytest.raises(ValueError, match="frames"):
        metrics.lve(a, np.zeros((9, 4, 3)), [0])
    with pytest.raises(ValueError, match="region"):
        metrics.lve(a, a, [7])
    with pytest.raises(ValueError, match="empty"):
        metrics.lve(a, a, [])
    # a one-frame rounding difference is tolerated: both are cut to the shorter
    assert metrics.lve(np.zeros((6, 4, 3)), a, [0]) == 0.0
