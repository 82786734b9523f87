"""Training the peers (VOCA, FaceFormer, CodeTalker) with MMTalker's data pipeline, checkpoints and curves.

The peers predict every vertex of the training topology, so a step needs no UV sampler: a batch of random
windows (``mmtalker.train.data.make_batch``, the same cached and augmented speech features as MMTalker),
a dense position loss over all vertices (extra weight on lips and eyes, as MMTalker's) and a velocity loss.
Each kind has an adapter saying what its phases are, which parameters they train and what a step computes:

- VOCA: one phase; the linear decoder starts from the PCA of training offsets; position + velocity.
- FaceFormer: one phase, teacher-forced; position + velocity (validation decodes autoregressively).
- CodeTalker: stage 1 trains the motion VQ-VAE (reconstruction + velocity + codebook + β·commitment) into
  ``<run>/stage1``; stage 2 freezes it and trains the speech-to-code decoder (latent regression + motion
  through the frozen decoder) into ``<run>``. ``stages: {train: [2], stage1_checkpoint: …}`` starts from a
  stage-1 run instead. The time and epoch budgets are split between the stages by ``stage1_share``.

A run folder holds what MMTalker's holds: ``best/``, ``last/`` (with the training state), ``history.jsonl``,
``curves.png``, ``results.json``, ``training_config.json``. Single process (no DDP).
Shapes: ``B`` clips, ``W`` window frames, ``V`` vertices, ``C`` feature width.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmtalker.audio.augment import AugmentConfig
from mmtalker.errors import MMTalkerError
from mmtalker.eval.metrics import MetricAccumulator
from mmtalker.models.registry import config_kind, get_kind, load_model
from mmtalker.train import checkpoint as ckpt
from mmtalker.train.averaging import WeightAverage, raw_state, scored_model
from mmtalker.train.config import DataConfig, OptimConfig, _merge, build_dataclass, read_config_dict
from mmtalker.train.curves import plot_curves
from mmtalker.train.losses import reconstruction_loss, velocity_loss, vertex_region_weight

PLOT_EVERY_S = 30.0


# ------------------------------------------------------------------------------------------------- config
@dataclass
class PeerLoss:
    """Loss weights of the peers (the ``loss`` section)."""

    position: float = 1.0
    velocity: float = 0.5  # as MMTalker's: the same emphasis on motion as on position
    lips: float = 1.0  # extra weight on lip vertices, as MMTalker's
    eyes: float = 0.5
    lip_region: str = "lips"
    eye_region: str = "eye_region"
    codebook: float = 1.0  # CodeTalker stage 1: ‖sg(z) − e‖²
    commitment: float = 0.25  # CodeTalker stage 1: β of β‖z − sg(e)‖² (the VQ-VAE paper's value)
    latent: float = 10.0  # CodeTalker stage 2: regression of the quantised code features (a mean over code
    # channels, small beside the per-vertex error: at 1 the straight-through motion loss let features drift off the codes)

    def check(self, where: str) -> None:
        """A weight below 0 would reward error (the strict config builder calls this)."""
        for key in ("position", "velocity", "lips", "eyes", "codebook", "commitment", "latent"):
            if not getattr(self, key) >= 0:
                raise MMTalkerError(where, f"setting '{key}' must be 0 or more, got {getattr(self, key)}")


@dataclass
class StageConfig:
    """CodeTalker's two stages (the ``stages`` section; other kinds ignore it)."""

    train: list[int] = field(default_factory=lambda: [1, 2])  # [1, 2], [1] or [2]
    stage1_checkpoint: str | None = None  # with train: [2], the stage-1 checkpoint folder (e.g. runs/x/stage1/best)
    stage1_share: float = 0.5  # share of the time and epoch budget given to stage 1 when both run


@dataclass
class PeerTrainingConfig:
    kind: str = "voca"
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = None  # the kind's config dataclass (VocaConfig, FaceFormerConfig, CodeTalkerConfig)
    loss: PeerLoss = field(default_factory=PeerLoss)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    stages: StageConfig = field(default_factory=StageConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def is_peer_config(path: str | Path) -> bool:
    """Whether a training config file names a peer kind (``kind: voca|faceformer|codetalker``)."""
    return config_kind(path) != "mmtalker"


def load_peer_config(path: str | Path, overrides: dict | None = None, where: str | None = None) -> PeerTrainingConfig:
    """Read a peer's training config (with its ``base:`` chain) and apply ``overrides`` ({section: {key: value}});
    errors in the settings name ``where`` (default: the file)."""
    data = _merge(read_config_dict(path), overrides or {})
    where = where or str(path)
    kind = get_kind(data.get("kind", "mmtalker"), str(path))
    if kind.adapter is None:
        raise MMTalkerError(path, f"kind {kind.name!r} is trained by MMTalker's own loop, not the peers'")
    model = build_dataclass(kind.config_class(), data.pop("model", None) or {}, f"{where}: model")
    config = build_dataclass(PeerTrainingConfig, data, where)
    config.model = model
    if not set(config.stages.train) <= {1, 2} or not config.stages.train:
        raise MMTalkerError(where, f"stages.train must be [1, 2], [1] or [2], got {config.stages.train}")
    if config.stages.train == [2] and kind.name == "codetalker" and not config.stages.stage1_checkpoint:
        raise MMTalkerError(where, "stage 2 alone needs stages.stage1_checkpoint", "point it to a stage-1 run's best/ folder")
    if not 0.0 < config.stages.stage1_share < 1.0:
        raise MMTalkerError(where, f"stages.stage1_share must lie in (0, 1), got {config.stages.stage1_share}")
    return config


# -------------------------------------------------------------------------------------------------- setup
@dataclass
class PeerSetup:
    dataset: Any
    train_clips: list
    val_clips: list
    test_sequences: dict  # split name -> sequences (test, test_unseen_subjects, …)
    model: torch.nn.Module
    regions: dict  # metric role (lips, eyes, upper) -> vertex indices
    vertex_weight: torch.Tensor  # (V,) loss weight per vertex
    encoder: Any
    fps: float


def build_peer_setup(config: PeerTrainingConfig, device: torch.device) -> PeerSetup:
    """Dataset, cached clip features (MMTalker's pipeline), the model with its mesh facts, region weights."""
    from mmtalker.audio.encoders import feature_name, model_audio_dim, model_audio_encoder
    from mmtalker.audio.finetune import prefix_states, start_blocks
    from mmtalker.data.dataset import open_dataset
    from mmtalker.train.data import load_clips, motion_scale
    from mmtalker.train.joined import training_sequences
    from mmtalker.train.loop import (_check_regions, _maybe_preload, _spread, scored_test_splits, split_overlap_notes,
                                     training_regions)

    dataset = open_dataset(config.data.path, config.data.preset, fps=config.data.fps, splits=config.data.splits)
    train_seqs = dataset.sequences(config.data.train_split)
    val_seqs = dataset.sequences(config.data.val_split) if config.data.val_split in dataset.split_names else []
    tests = scored_test_splits(dataset, config.data.test_split)  # checked before the speech features are computed
    for note in split_overlap_notes(train_seqs, {config.data.val_split: val_seqs, **tests}):
        print(f"mmtalker train: note: {note}", file=sys.stderr)
    fps = float(train_seqs[0].fps)
    subjects = sorted({s.subject for s in train_seqs})
    lw = config.loss
    found = training_regions(dataset, lw)
    note = _check_regions(dataset, lw, found)
    if note:
        print(f"mmtalker train: note: {note}", file=sys.stderr)
    encoder = model_audio_encoder(config.model)
    model_config = dataclasses.replace(config.model, subjects=subjects, fps=fps, audio_dim=model_audio_dim(config.model, encoder))
    common = dict(encoder=encoder, encoder_spec=feature_name(config.model), fps=fps, augment_config=config.augment, cache=_cache(config),
                  prefix_states=prefix_states(config.model))  # a fine-tuned encoder: its frozen states, not features
    train_clips = load_clips(dataset, training_sequences(train_seqs, config.data.join_share, config.optim.seed), subjects,
                             variants=config.data.augment_variants, desc="audio features (train)", **common)
    val_clips = load_clips(dataset, _spread(val_seqs, config.data.val_max_clips), subjects, variants=0, desc="audio features (val)", **common)
    _maybe_preload(train_clips, config.data.preload_max_gb)

    topology = dataset.topology()
    templates = np.stack([dataset.template(s) for s in subjects]).astype(np.float32)
    model_class = get_kind(config.kind).model_class()
    model = model_class(model_config, topology.vertices, templates, motion_scale(train_clips), topology.faces).to(device)
    if model.audio_blocks is not None:
        start_blocks(model.audio_blocks, encoder, model_config)  # the pretrained blocks to start from
        model.audio_blocks.to(device)

    weights = {lw.lip_region: lw.lips, lw.eye_region: lw.eyes}
    vertex_weight = vertex_region_weight(model.num_vertices, {k: torch.from_numpy(v) for k, v in found.items() if k in weights}, weights)
    roles = {"lips": lw.lip_region, "eyes": lw.eye_region, "upper": "upper_face"}
    regions = {role: found[name] for role, name in roles.items() if name in found}
    return PeerSetup(dataset, train_clips, val_clips, tests, model, regions, vertex_weight.to(device), encoder, fps)


def _cache(config: PeerTrainingConfig):
    from mmtalker.paths import cache_dir
    from mmtalker.train.data import FeatureCache

    return FeatureCache(Path(config.data.cache_dir) if config.data.cache_dir else cache_dir() / "features")


# ---------------------------------------------------------------------------------------------- the losses
def dense_losses(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, vertex_weight: torch.Tensor) -> tuple:
    """Position and velocity losses over all vertices: pred, target (B, W, V, 3) in motion units, mask (B, W),
    vertex_weight (V,). Each is a mean over real frames (frame pairs) of the weighted mean over vertices."""
    ones = torch.ones(pred.shape[2], device=pred.device)
    return (reconstruction_loss(pred, target, ones, mask, vertex_weight),
            velocity_loss(pred, target, ones, mask, vertex_weight))


@dataclass
class Phase:
    """One training phase: ``stage`` (0 for single-phase kinds), its run sub-folder and budget share."""

    stage: int
    folder: str
    share: float


class DenseAdapter:
    """One phase; step = dense position + velocity loss on ``forward_train``'s output."""

    def phases(self, config: PeerTrainingConfig) -> list[Phase]:
        return [Phase(0, "", 1.0)]

    def begin(self, phase: Phase, setup: PeerSetup, config: PeerTrainingConfig) -> None:
        pass

    def parameters(self, model, phase: Phase):
        return [p for p in model.parameters() if p.requires_grad]

    def forward_train(self, model, batch, target):
        raise NotImplementedError

    def step(self, model, batch, target, vertex_weight, lw: PeerLoss, phase: Phase) -> tuple[torch.Tensor, dict]:
        """batch: mmtalker.train.data.Batch on the device; target (B, W, V, 3) in motion units."""
        pred = self.forward_train(model, batch, target)
        pos, vel = dense_losses(pred, target, batch.loss_mask, vertex_weight)
        loss = lw.position * pos + lw.velocity * vel
        return loss, {"loss": loss.item(), "recon": pos.item(), "velocity": vel.item()}

    def validate(self, model, clips, regions, device, phase: Phase) -> dict:
        from mmtalker.train.loop import evaluate_clips

        return evaluate_clips(model, clips, regions, device, desc="validation")


class VocaAdapter(DenseAdapter):
    def begin(self, phase, setup, config) -> None:
        """Initialise the linear decoder from the PCA of (up to 2000) training frames' offsets."""
        rng = np.random.default_rng(config.optim.seed)
        frames = []
        for clip in setup.train_clips:
            d = clip.displacement()
            frames.append(d[rng.choice(len(d), size=min(len(d), 16), replace=False)])
        sample = np.concatenate(frames)[:2000] / float(setup.model.motion_scale)
        setup.model.init_decoder_pca(torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32)))

    def forward_train(self, model, batch, target):
        return model(batch.audio, batch.subject, batch.mask)


class FaceFormerAdapter(DenseAdapter):
    def forward_train(self, model, batch, target):
        """Teacher forcing, or with ``model.own_inputs`` > 0 a share of its own predictions as inputs
        (``scheduled_inputs``; benchmarks/exposure_bias.py measures what teacher forcing alone costs)."""
        inputs = scheduled_inputs(model, target, lambda past: model(batch.audio, batch.subject, past, batch.mask))
        return model(batch.audio, batch.subject, inputs, batch.mask)


class CodeTalkerAdapter(DenseAdapter):
    def phases(self, config):
        stages, share = config.stages.train, config.stages.stage1_share
        if stages == [1, 2]:
            return [Phase(1, "stage1", share), Phase(2, "", 1.0 - share)]
        return [Phase(stages[0], "", 1.0)]

    def begin(self, phase, setup, config) -> None:
        model = setup.model
        if phase.stage == 2 and config.stages.train == [2]:
            _load_stage1(model, Path(config.stages.stage1_checkpoint))
        model.vqvae.requires_grad_(phase.stage == 1)
        model.stages_trained.fill_(phase.stage)

    def step(self, model, batch, target, vertex_weight, lw, phase):
        from mmtalker.models.codetalker import vq_losses

        if phase.stage == 1:
            recon, z, e = model.vqvae(target, batch.mask)
            pos, vel = dense_losses(recon, target, batch.loss_mask, vertex_weight)
            cb, cm = vq_losses(z, e, batch.loss_mask)
            loss = lw.position * pos + lw.velocity * vel + lw.codebook * cb + lw.commitment * cm
            return loss, {"loss": loss.item(), "recon": pos.item(), "velocity": vel.item(), "codebook": cb.item(), "commitment": cm.item()}
        model.vqvae.eval()  # frozen: no dropout
        q = model.vqvae.quantizer
        with torch.no_grad():
            truth = q.nearest(model.vqvae.encode(target, batch.mask))  # (B, W, N, c)
        feat = model.speech_to_latents(batch.audio, batch.subject, self.stage2_inputs(model, batch, truth))
        latent, _ = vq_losses(truth, feat, batch.loss_mask)  # mean ‖truth − feat‖² over real frames
        recon = model.vqvae.decode(q(feat)[0], batch.mask)  # straight-through the frozen codebook
        pos, vel = dense_losses(recon, target, batch.loss_mask, vertex_weight)
        loss = lw.latent * latent + lw.position * pos + lw.velocity * vel
        return loss, {"loss": loss.item(), "latent": latent.item(), "recon": pos.item(), "velocity": vel.item()}

    @staticmethod
    def stage2_inputs(model, batch, truth: torch.Tensor) -> torch.Tensor:
        """Stage 2's input codes (B, W, N, c): the truth's quantised codes, or with ``model.own_inputs`` > 0 a
        share of its own quantised predictions (``scheduled_inputs``)."""
        nearest = model.vqvae.quantizer.nearest
        return scheduled_inputs(model, truth, lambda past: nearest(model.speech_to_latents(batch.audio, batch.subject, past)))

    def validate(self, model, clips, regions, device, phase):
        if phase.stage == 1:
            return evaluate_reconstruction(model, clips, regions, device)
        return super().validate(model, clips, regions, device, phase)


def scheduled_inputs(model, truth: torch.Tensor, predict) -> torch.Tensor:
    """An autoregressive peer's training inputs (B, W, …): ``truth`` (teacher forcing), or with
    ``model.config.own_inputs`` > 0 in training scheduled sampling in parallel passes: that share of frames
    take the model's own predictions, made without gradient by ``own_input_passes`` calls of
    ``predict(past) -> predictions`` (each fed the previous pass's, so a frame's input holds errors compounded
    that many steps), as inference will feed it. FaceFormer passes its frames, CodeTalker its quantised codes."""
    cfg = model.config
    if not (model.training and cfg.own_inputs > 0):
        return truth
    with torch.no_grad():
        own = truth
        for _ in range(cfg.own_input_passes):  # ≥ 1: peer_base.check_own_inputs
            own = predict(own)
    pick = torch.rand(truth.shape[:2], device=truth.device) < cfg.own_inputs  # (B, W)
    return torch.where(pick.reshape(*pick.shape, *[1] * (truth.dim() - 2)), own, truth)


def _load_stage1(model, directory: Path) -> None:
    """Copy a stage-1 checkpoint's VQ-VAE (and motion scale) into ``model``; sizes must agree."""
    stage1, config, _ = load_model(directory, expect="codetalker")
    keys = ("hidden", "conv_layers", "components", "code_dim", "codebook_size")
    differ = [k for k in keys if getattr(config, k) != getattr(model.config, k)]
    if differ or stage1.num_vertices != model.num_vertices:
        raise MMTalkerError(directory, f"stage-1 model does not match this config ({', '.join(differ) or 'vertex count'})")
    if int(stage1.stages_trained) < 1:
        raise MMTalkerError(directory, "this checkpoint has no trained stage 1")
    model.vqvae.load_state_dict(stage1.vqvae.state_dict())
    model.motion_scale.copy_(stage1.motion_scale)


@torch.no_grad()
def evaluate_reconstruction(model, clips, regions, device) -> dict:
    """Stage-1 validation: the VQ-VAE's reconstruction of the true motion, scored like evaluate_clips."""
    model.eval()
    acc = MetricAccumulator(regions.get("lips"), regions.get("eyes"), regions.get("upper"))
    sq, count = 0.0, 0
    scale = float(model.motion_scale)
    for clip in clips:
        truth = clip.displacement()
        motion = torch.from_numpy(np.ascontiguousarray(truth, dtype=np.float32))[None].to(device) / scale
        recon = model.vqvae(motion)[0][0].cpu().numpy() * scale
        acc.add(recon + clip.template, truth + clip.template, clip.template)
        sq += float(np.square(recon - truth, dtype=np.float64).sum(-1).mean()) * len(truth)
        count += len(truth)
    out = acc.result()
    out["loss"] = sq / max(count, 1) / scale**2
    model.train()
    return out


# ------------------------------------------------------------------------------------------------ the loop
def train_peer(config: PeerTrainingConfig, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Train a peer as ``config`` says into ``run_dir`` (phase by phase); returns the final results."""
    from mmtalker.train.loop import prepare_run_dir, seed_everything, setup_distributed

    run_dir = Path(run_dir)
    info, device = setup_distributed(config.optim.device)
    if info.world > 1:
        raise MMTalkerError("torchrun", "the peers train in one process", "launch 'mmtalker train' without torchrun")
    if resume and not any((run_dir / sub / "last" / ckpt.STATE_META).is_file() for sub in ("", "stage1")):
        raise MMTalkerError(run_dir, "has no checkpoint to resume from (last/training_state.json)")
    if resume:  # another kind's run: refused before its training_config.json is written over
        ckpt.check_resume_kind(run_dir, config.kind)
    prepare_run_dir(run_dir, resume=False, overwrite=overwrite or resume)  # a CodeTalker run may resume in stage1/
    seed_everything(config.optim.seed, config.optim.deterministic)
    rng = np.random.default_rng(config.optim.seed)
    setup = build_peer_setup(config, device)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "training_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    adapter = get_kind(config.kind).training_adapter()
    elapsed_s = 0.0
    phases = adapter.phases(config)
    for phase in phases:
        phase_dir = run_dir / phase.folder if phase.folder else run_dir
        phase_dir.mkdir(parents=True, exist_ok=True)
        adapter.begin(phase, setup, config)
        elapsed_s += _run_phase(config, setup, adapter, phase, phase_dir, rng, device, resume, phase is phases[-1])
        best = load_model(phase_dir / "best", device)[0]
        setup.model.load_state_dict(best.state_dict())  # the next phase starts from this phase's best
    return _finish(config, setup, run_dir, device, elapsed_s)


def _run_phase(config, setup, adapter, phase: Phase, phase_dir: Path, rng, device, resume: bool, last: bool) -> float:
    """Epochs of one phase with MMTalker's schedule (warmup, cosine decay following steps or the clock).
    Returns the phase's training time in seconds. Resuming continues the phase's last/ up to the epochs
    asked for; a finished phase before the last one is kept as it is (the next one started from it)."""
    from mmtalker.train.data import draw_windows, make_batch
    from mmtalker.train.loop import lr_factor, param_groups, tuned_batch_features

    model, opt_cfg = setup.model, config.optim
    opt = torch.optim.AdamW(param_groups(adapter.parameters(model, phase), model, opt_cfg), weight_decay=opt_cfg.weight_decay)
    epochs = max(1, round(opt_cfg.epochs * phase.share))
    counters = {"epoch": 0, "step": 0, "best": None, "history": [], "elapsed_s": 0.0, "done": False}
    averager = WeightAverage(model, opt_cfg.ema) if opt_cfg.ema else None  # see mmtalker.train.averaging
    if not (resume and (phase_dir / "last" / ckpt.STATE_META).is_file()):
        (phase_dir / "history.jsonl").unlink(missing_ok=True)  # --overwrite: an earlier run's epochs are not this run's
    if resume and (phase_dir / "last" / ckpt.STATE_META).is_file():
        scored_model(model, averager).load_state_dict(load_model(phase_dir / "last", device)[0].state_dict())
        counters = ckpt.load_training_state(phase_dir / "last", {"model": opt}, raw_state(model, averager), rng)
        if counters["epoch"] >= epochs or (counters.get("done") and not last):
            return counters["elapsed_s"]
        # adapter.begin ran before this load; running it again would re-initialise VOCA's trained decoder
    clips = setup.train_clips
    steps_per_epoch = max(1, math.ceil(len(clips) / opt_cfg.batch_size))
    total = steps_per_epoch * epochs
    budget = None if opt_cfg.max_minutes is None else opt_cfg.max_minutes * 60 * phase.share
    start, last_plot = time.monotonic() - counters["elapsed_s"], -math.inf
    scale = float(model.motion_scale)
    model.train()
    while counters["epoch"] < epochs:
        order, sums, n = rng.permutation(len(clips)), {}, 0
        for i in range(steps_per_epoch):
            frac = max(counters["step"] / total, (time.monotonic() - start) / budget if budget else 0.0)
            for group in opt.param_groups:
                group["lr"] = group.get("base_lr", opt_cfg.lr) * lr_factor(frac, counters["step"], opt_cfg.warmup_steps, opt_cfg.min_lr_ratio)
            idx = np.resize(order[i * opt_cfg.batch_size :][: opt_cfg.batch_size], min(opt_cfg.batch_size, len(order)))
            chosen = [clips[j] for j in idx]
            windows = draw_windows(chosen, rng, config.data.window_frames, config.data.splice_prob,
                                   config.data.cover_edges)
            feats = tuned_batch_features(model, chosen, windows, device) if model.audio_blocks is not None else None
            batch = make_batch(chosen, windows, config.data.window_frames, context=config.data.context_frames, features=feats).to(device)
            opt.zero_grad(set_to_none=True)
            loss, terms = adapter.step(model, batch, batch.disp / scale, setup.vertex_weight, config.loss, phase)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), opt_cfg.grad_clip)
            opt.step()
            if averager is not None:
                averager.update(model, counters["step"])
            counters["step"] += 1
            n += 1
            sums = {k: sums.get(k, 0.0) + v for k, v in terms.items()}
            if budget and time.monotonic() - start > budget:
                break
        counters["epoch"] += 1
        counters["elapsed_s"] = time.monotonic() - start
        stop = bool(budget) and counters["elapsed_s"] > budget
        counters["done"] = stop or counters["epoch"] == epochs
        plot = counters["done"] or time.monotonic() - last_plot > PLOT_EVERY_S
        last_plot = time.monotonic() if plot else last_plot
        _end_of_epoch(config, setup, adapter, phase, phase_dir, counters, {k: v / n for k, v in sums.items()}, opt, rng, device, plot,
                      averager)
        if stop:
            break
    return counters["elapsed_s"]


def _extras(config, setup, counters, metrics, phase: Phase) -> dict:
    m = setup.dataset.manifest
    return {"training": config.to_dict(), "kind": config.kind, "stage": phase.stage,
            "dataset": {"name": m.name, "path": str(config.data.path), "fps": setup.fps, "units": m.units,
                        "num_vertices": setup.model.num_vertices},
            "epoch": counters["epoch"], "step": counters["step"], "metrics": metrics}


def _end_of_epoch(config, setup, adapter, phase, phase_dir, counters, train_terms, opt, rng, device, plot, averager=None) -> None:
    """Validate, log, keep last and best checkpoints (of the weight average, when there is one), redraw the curves."""
    from mmtalker.train.loop import epoch_scores, record_epoch

    scored = scored_model(setup.model, averager)
    val = adapter.validate(scored, setup.val_clips, setup.regions, device, phase) if setup.val_clips else {}
    record, improved = record_epoch(counters, train_terms, val, config.optim.select_metric)
    if improved:
        ckpt.save_checkpoint(phase_dir / "best", scored, _extras(config, setup, counters, record["val"], phase))
    ckpt.save_checkpoint(phase_dir / "last", scored, _extras(config, setup, counters, record["val"], phase))
    ckpt.save_training_state(phase_dir / "last", {"model": opt}, raw_state(setup.model, averager), counters, rng)
    with open(phase_dir / "history.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    if plot:
        plot_curves(counters["history"], phase_dir / "curves.png")
    label = f"{config.kind}{f' stage {phase.stage}' if phase.stage else ''}"
    print(f"{label} epoch {counters['epoch']}: train loss {train_terms.get('loss', float('nan')):.4g}; "
          f"{epoch_scores(record['val'], setup.dataset.manifest.units, improved, config.optim.select_metric)}", flush=True)


def _finish(config, setup, run_dir: Path, device, elapsed_s: float) -> dict:
    """Score the test splits with the best weights; write results.json."""
    from mmtalker.audio.finetune import prefix_states
    from mmtalker.train.data import load_clips
    from mmtalker.train.loop import evaluate_clips, reference_scores

    best, _, extras = load_model(run_dir / "best", device)
    last = ckpt.read_checkpoint_meta(run_dir / "last").get("extras", {})  # (CodeTalker: its last stage)
    results = {"kind": config.kind, "epochs": last.get("epoch"), "steps": last.get("step"), "best_epoch": extras.get("epoch"),
               "train_minutes": round(elapsed_s / 60, 2), "val": extras.get("metrics", {})}
    if int(getattr(best, "stages_trained", 2)) >= 2:
        enc = dict(encoder=setup.encoder, encoder_spec=config.model.audio_encoder, fps=setup.fps, augment_config=AugmentConfig(), cache=_cache(config),
                   prefix_states=prefix_states(best.config))
        for split, seqs in setup.test_sequences.items():
            clips = load_clips(setup.dataset, seqs, best.config.subjects, variants=0, desc=f"audio features ({split})", **enc)
            results[split] = evaluate_clips(best, clips, setup.regions, device, desc=split)
    results.update(reference_scores(setup.dataset.manifest))
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


# ------------------------------------------------------------------------------------------ command line
def train_from_file(path, overrides: dict, run_dir, *, resume: bool = False, overwrite: bool = False,
                    where: str | None = None) -> dict:
    """What ``mmtalker train --config <peer config>`` runs (``where``: see :func:`load_peer_config`)."""
    return train_peer(load_peer_config(path, overrides, where), run_dir, resume=resume, overwrite=overwrite)
