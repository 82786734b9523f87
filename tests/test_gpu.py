"""The GPU path: training under bf16 autocast on CUDA, inference on CUDA agreeing with the CPU.

Skipped where no CUDA device is present (the CI machine has none); run on a GPU machine with
``pytest -m gpu``. benchmarks/gpu_check.sh runs these tests and the GPU benchmarks in one go.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fake_talk import grid_mesh, write_fake_dataset

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_training_on_gpu_runs_under_bf16_and_learns(tmp_path, monkeypatch):
    from mmtalker.train import loop
    from mmtalker.train.checkpoint import load_checkpoint
    from mmtalker.train.config import load_config

    seen = []
    real_autocast = torch.autocast

    def spy(device_type, *a, **kw):  # record how each training forward pass is autocast
        seen.append((device_type, kw.get("dtype"), kw.get("enabled", True)))
        return real_autocast(device_type, *a, **kw)

    monkeypatch.setattr(loop.torch, "autocast", spy)
    data = write_fake_dataset(tmp_path / "data", clips_per_subject=4)
    config = load_config(CONFIGS / "mmtalker_synth.yaml", {
        "data": {"path": str(data), "cache_dir": str(tmp_path / "cache"), "augment_variants": 0, "window_frames": 32},
        "model": {"audio_encoder": "logmel", "audio_finetune": 0, "d_model": 32, "gcn_layers": 1, "num_region_tokens": 4, "heads": 2},
        "sampler": {"points": 64},
        "optim": {"epochs": 6, "max_minutes": None, "batch_size": 4, "lr": 0.005, "warmup_steps": 2, "device": "cuda"}})
    results = loop.train(config, tmp_path / "run")
    enabled = [s for s in seen if s[2]]  # (the GCN's sparse product turns autocast off inside)
    assert enabled and all(s == ("cuda", torch.bfloat16, True) for s in enabled)
    history = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    losses = [h["train"]["loss"] for h in history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    scored = {k: v for k, v in results.items() if k.startswith("test")}
    assert scored and all(np.isfinite(v["lve"]) for v in scored.values())
    model = load_checkpoint(tmp_path / "run" / "last", "cpu")[0]  # a GPU run's checkpoint loads on a CPU
    assert next(model.parameters()).device.type == "cpu"


def test_gpu_inference_matches_cpu():
    from mmtalker.inference.random_model import build_random_model
    from mmtalker.models.mmtalker import MMTalkerConfig

    model = build_random_model(grid_mesh(12), MMTalkerConfig(audio_dim=80, subjects=["a", "b"], d_model=32, heads=2),
                               motion_fraction=0.05)
    audio = torch.randn(1, 90, 80, generator=torch.Generator().manual_seed(0))
    subject = torch.tensor([1])
    with torch.no_grad():
        cpu = model.predict_vertices(audio, subject)
        gpu = model.to("cuda").predict_vertices(audio.cuda(), subject.cuda()).cpu()
    scale = float(cpu.abs().max())
    assert scale > 0
    np.testing.assert_allclose(gpu.numpy(), cpu.numpy(), atol=1e-3 * scale, rtol=0)  # TF32 matmuls on the GPU


@pytest.mark.parametrize("kind", ["voca", "faceformer", "codetalker"])
def test_peers_train_on_gpu(kind, tmp_path):
    from mmtalker.models import registry
    from mmtalker.train.peers import load_peer_config, train_peer

    data = write_fake_dataset(tmp_path / "data")
    config = load_peer_config(CONFIGS / f"{kind}_synth.yaml", {
        "data": {"path": str(data), "cache_dir": str(tmp_path / "cache"), "augment_variants": 0, "window_frames": 16},
        "model": {"audio_encoder": "logmel", "audio_finetune": 0},
        "optim": {"epochs": 2, "max_minutes": None, "batch_size": 4, "warmup_steps": 1, "device": "cuda", "lr": 3e-3}})
    results = train_peer(config, tmp_path / "run")
    assert np.isfinite(results["test"]["mve"]) and results["test"]["mve"] > 0
    model = registry.load_model(tmp_path / "run" / "best", "cpu", expect=kind)[0]
    assert next(model.parameters()).device.type == "cpu"


def test_api_animates_and_streams_on_gpu_as_on_cpu(tmp_path):
    """``MMTalker.from_pretrained(device="cuda")``: the encoder follows the network, outputs come back as numpy."""
    from mmtalker.inference.api import MMTalker
    from mmtalker.inference.stream import stream_array
    from test_api import speechlike, tiny_checkpoint

    tiny_checkpoint(tmp_path / "ckpt", seed=3, encoder="whisper-tiny.en")
    audio = speechlike(3.0, seed=1)
    cpu, gpu = (MMTalker.from_pretrained(tmp_path / "ckpt", device=d) for d in ("cpu", "cuda"))
    assert gpu.engine.device.type == "cuda" and next(gpu.engine.encoder.parameters()).device.type == "cuda"
    rest = cpu.template_mesh.vertices
    scale = float(np.abs(cpu.animate(audio, style="alice") - rest).max())
    for a, b in ((cpu.animate(audio, style="alice"), gpu.animate(audio, style="alice")),
                 (stream_array(cpu.stream(style="alice"), audio), stream_array(gpu.stream(style="alice"), audio))):
        assert isinstance(b, np.ndarray) and b.shape == a.shape
        np.testing.assert_allclose(b, a, atol=2e-2 * scale, rtol=0)  # TF32 matmuls on the GPU
    sub = tmp_path / "fine.obj"  # retargeting to another resolution on the GPU
    import trimesh

    mesh = cpu.template_mesh
    fine = trimesh.remesh.subdivide(mesh.vertices, mesh.faces)
    trimesh.Trimesh(*fine, process=False).export(sub)
    assert gpu.animate(audio, template=sub).shape[1] == len(fine[0])


def test_trainer_takes_the_gpu_named():
    from mmtalker.train.loop import setup_distributed

    last = torch.cuda.device_count() - 1
    assert setup_distributed("cuda")[1] == torch.device("cuda", 0)
    assert setup_distributed(f"cuda:{last}")[1] == torch.device("cuda", last)
    torch.cuda.set_device(0)
