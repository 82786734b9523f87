"""`mmtalker evaluate` on saved predictions: peers' file naming, region overrides, frame-weighted totals."""

import json

import numpy as np
import pytest

from fake_talk import write_fake_dataset
from mmtalker.cli import main
from mmtalker.data.dataset import open_dataset
from mmtalker.eval import metrics


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return write_fake_dataset(tmp_path_factory.mktemp("fake") / "data")


def test_scores_peer_style_predictions(dataset_dir, tmp_path, capsys):
    ds = open_dataset(dataset_dir)
    seqs = ds.sequences("test")
    pred_dir = tmp_path / "faceformer"
    pred_dir.mkdir()
    rng = np.random.default_rng(1)
    expected_frames = []
    for seq in seqs:
        gt = seq.vertices()
        for style in ("s01", "s02"):  # FaceFormer writes one file per conditioning subject, flattened
            pred = gt + rng.normal(0, 1e-3, gt.shape).astype(np.float32)
            np.save(pred_dir / f"{seq.key}_condition_{style}.npy", pred.reshape(len(pred), -1))
            expected_frames.append(metrics.region_max_sq_error(pred, gt, ds.region("lips")))
    out_json = tmp_path / "scores.json"
    code = main(["evaluate", "--data", str(dataset_dir), "--pred", str(pred_dir), "--name", "FaceFormer",
                 "--json", str(out_json), "--per-subject"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| FaceFormer |" in printed and "LVE (m²" in printed
    scores = json.loads(out_json.read_text())["models"]["FaceFormer"]
    assert scores["overall"]["lve"] == pytest.approx(np.concatenate(expected_frames).mean(), rel=1e-5)
    assert scores["overall"]["sequences"] == 2 * len(seqs)
    assert set(scores["per_subject"]) == {"s01", "s02"}


def test_region_override_and_missing_predictions(dataset_dir, tmp_path, capsys):
    ds = open_dataset(dataset_dir)
    seq = ds.sequences("test")[0]
    pred_dir = tmp_path / "ours"
    pred_dir.mkdir()
    np.save(pred_dir / f"{seq.key}.npy", seq.vertices())  # a perfect prediction for one sequence only
    lips_file = tmp_path / "lve.txt"
    lips_file.write_text(", ".join(str(i) for i in range(10)))  # BIWI-style ", " separators
    out_json = tmp_path / "s.json"
    assert main(["evaluate", "--data", str(dataset_dir), "--pred", str(pred_dir), "--regions", f"lips={lips_file}",
                 "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "has no prediction for 1 sequences" in out and "lve.txt" in out
    overall = json.loads(out_json.read_text())["models"]["ours"]["overall"]
    assert overall["lve"] == 0.0 and overall["mve"] == 0.0


def test_clear_errors(dataset_dir, tmp_path, capsys):
    assert main(["evaluate", "--data", str(dataset_dir), "--pred", str(tmp_path / "nope")]) == 1
    assert "prediction folder not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "--data", str(dataset_dir), "--pred", str(empty)]) == 1
    assert "no sequence of the split has a prediction" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(dataset_dir), "--split", "bogus", "--pred", str(empty)]) == 1
    assert "has no split 'bogus'" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(dataset_dir), "--regions", "mouth=x.txt", "--pred", str(empty)]) == 1
    assert "ROLE=FILE" in capsys.readouterr().err


def test_report_table_charts_and_heatmap(dataset_dir, tmp_path):
    from PIL import Image

    ds = open_dataset(dataset_dir)
    pred_dir = tmp_path / "model"
    pred_dir.mkdir()
    for seq in ds.sequences("test"):
        gt = seq.vertices()
        noisy = gt.copy()
        noisy[:, ds.region("lips")] += 0.002  # errors on the lips only
        np.save(pred_dir / f"{seq.key}.npy", noisy)
    scores = tmp_path / "s.json"
    assert main(["evaluate", "--data", str(dataset_dir), "--pred", str(pred_dir), "--json", str(scores)]) == 0
    per_vertex = np.asarray(json.loads(scores.read_text())["models"]["model"]["per_vertex_sq_error"])
    lips = ds.region("lips")
    assert np.allclose(per_vertex[lips], 3 * 0.002**2, rtol=1e-3)
    assert np.all(np.delete(per_vertex, lips) < 1e-12)
    out = tmp_path / "report"
    assert main(["report", str(scores), "--data", str(dataset_dir), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "| model |" in md and "metrics_test.png" in md and "heatmap_test.png" in md
    heat = np.asarray(Image.open(out / "heatmap_test.png").convert("RGB"))
    assert heat.std() > 10  # a rendered face, not a blank image
    assert main(["report", str(scores), "--out", str(out)]) == 1  # no silent overwrite
