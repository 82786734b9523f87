"""``mmtalker demo``: a step's earlier output is reused only when it was made with the settings asked for now."""

from __future__ import annotations

import argparse
import json

import pytest

from mmtalker.cli import main
from mmtalker.commands import demo
from mmtalker.errors import MMTalkerError


def test_unknown_preset_fails_before_anything_is_made(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--preset", "bogus"]) == 1
    err = capsys.readouterr().err
    assert "--preset bogus: no such dataset preset" in err and "wide-test" in err
    assert not out.exists()


def test_data_made_with_another_preset_is_not_reused(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "data").mkdir(parents=True)
    manifest = out / "data" / "manifest.json"
    manifest.write_text(json.dumps({"extra": {"generator": {"preset": "tiny", "seed": 0}}}))
    assert main(["demo", "--out", str(out)]) == 1  # asks for the default preset
    err = capsys.readouterr().err
    assert str(manifest) in err and "preset 'tiny' (asked: 'default')" in err and f"delete {out}" in err
    assert manifest.is_file() and not (out / "preview.png").exists()  # nothing of the user's touched


def test_data_with_the_same_preset_passes_the_check(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"extra": {"generator": {"preset": "tiny", "seed": 3}}}))
    demo._check_same(tmp_path / "manifest.json", demo._made_with(tmp_path), {"preset": "tiny", "seed": 3}, tmp_path)
    # a folder whose manifest does not say how it was made (the user's own data) is used as it is
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "mine"}))
    assert demo._made_with(tmp_path) == {}


def test_model_trained_with_another_budget_is_not_reused(tmp_path):
    run = tmp_path / "mmtalker"
    (run / "best").mkdir(parents=True)
    (run / "best" / "config.json").write_text("{}")
    (run / "results.json").write_text("{}")
    (run / "training_config.json").write_text(json.dumps({"optim": {"max_minutes": 2.0, "seed": 0}}))
    args = argparse.Namespace(minutes=15.0, seed=0, out=tmp_path, config=tmp_path / "unused.yaml")
    with pytest.raises(MMTalkerError) as err:
        demo._train(args, tmp_path / "data", run)
    assert "minutes 2.0 (asked: 15.0)" in err.value.message
    args.minutes = 2  # the same budget, written as an int: reused
    assert demo._train(args, tmp_path / "data", run) == run / "best"
