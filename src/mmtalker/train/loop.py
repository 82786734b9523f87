"""The MMTalker training loop: plain PyTorch, DDP when launched by torchrun, nothing hidden.

One call, :func:`train`, goes through these steps:

1. set up the process group (``torchrun`` sets WORLD_SIZE > 1: gloo on CPU, nccl on GPU), device, seeds;
2. open the dataset, parameterize its topology in UV, cache the audio features of every clip (clean and
   augmented variants);
3. build the model (mesh facts and the motion scale inside), the non-uniform sampler, AdamW;
4. per step: draw P UV points, a batch of random windows, predict the points' displacements, minimise the
   importance-weighted reconstruction + velocity loss (and the sampler's variance objective);
5. per epoch: dense validation at the vertices (LVE/EVE/MVE), save ``last/`` (with the training state for
   ``--resume``) and, when the selected metric improves, ``best/``; redraw ``curves.png``;
6. at the end: score the test split with the best weights into ``results.json``.

The run folder holds ``best/``, ``last/``, ``curves.png``, ``history.jsonl``, ``results.json`` and
``training_config.json``. An epoch is as many steps as one window from each training clip would fill; each step draws
its clips at random (``draw_batch``), so within an epoch some clips come twice and some not at all.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from mmtalker.audio.encoders import feature_name, model_audio_dim, model_audio_encoder
from mmtalker.audio.finetune import prefix_states, start_blocks
from mmtalker.data.dataset import open_dataset
from mmtalker.devices import resolve_device
from mmtalker.errors import MMTalkerError
from mmtalker.eval.metrics import MetricAccumulator
from mmtalker.mesh.sampling import NonUniformSampler, variance_loss, vertex_points
from mmtalker.mesh.uv import parameterize
from mmtalker.models.mmtalker import MMTalker, MMTalkerConfig
from mmtalker.paths import cache_dir
from mmtalker.progress import progress
from mmtalker.train import checkpoint as ckpt
from mmtalker.train.averaging import WeightAverage, raw_state, scored_model
from mmtalker.train.config import TrainingConfig, build_dataclass
from mmtalker.train.curves import plot_curves
from mmtalker.train.data import FeatureCache, draw_windows, load_clips, make_batch, motion_scale, variant_features
from mmtalker.train.joined import training_sequences
from mmtalker.train.losses import (
    frame_max_loss,
    point_errors,
    reconstruction_loss,
    region_point_weight,
    velocity_loss,
    vertex_region_weight,
)


PLOT_EVERY_S = 30.0  # redraw curves.png at most this often (and after the last epoch)


# ---------------------------------------------------------------------------------------------- environment
@dataclasses.dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_pref: str) -> tuple[Dist, torch.device]:
    """Process group from torchrun's environment (if any) and this process's device: ``device_pref`` as
    :func:`mmtalker.devices.resolve_device` checks it, except that under torchrun on CUDA each process takes
    its local rank's GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    name = resolve_device(device_pref)
    use_cuda = name.startswith("cuda")
    device = torch.device("cpu")
    if use_cuda:  # torchrun: the local rank's GPU; else the one named (cuda: the first)
        device = torch.device("cuda", info.local_rank if world > 1 else int(name.partition(":")[2] or 0))
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return info, device


def seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to write into a non-empty folder unless resuming or told to overwrite (nothing is deleted). The
    folder itself is made by the caller once the data and the network are ready, so a run that cannot start
    leaves no empty folder behind."""
    if run_dir.exists() and not run_dir.is_dir():
        raise MMTalkerError(run_dir, "exists and is not a folder")
    busy = run_dir.is_dir() and any(run_dir.iterdir())
    if resume and not (run_dir / "last" / ckpt.STATE_META).is_file():
        raise MMTalkerError(run_dir, "has no checkpoint to resume from (last/training_state.json)")
    if busy and not (resume or overwrite):
        raise MMTalkerError(run_dir, "run folder exists and is not empty", "pass --resume to continue it or --overwrite to write over it")


def lr_factor(progress_fraction: float, step: int, warmup_steps: int, min_ratio: float) -> float:
    """1. linear warmup over ``warmup_steps``; 2. cosine decay from 1 to ``min_ratio`` as progress goes 0 → 1."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    p = min(max(progress_fraction, 0.0), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))


# ------------------------------------------------------------------------------------------------- the run
@dataclasses.dataclass
class Setup:
    """What the steps need, built once: data, model, sampler, optimisers, region weights."""

    dataset: object
    train_clips: list
    val_clips: list
    test_sequences: dict  # split name -> sequences: every split whose name starts with data.test_split
    model: MMTalker
    sampler: NonUniformSampler
    regions: dict
    vertex_weight: torch.Tensor
    encoder: object
    fps: float
    averager: WeightAverage | None = None  # optim.ema > 0: the weights validated, selected and saved
    lip_points: tuple | None = None  # loss.lip_max > 0: the lip vertices (L,) and, as surface points, face (L,), bary (L, 3)

    @property
    def scored_model(self) -> MMTalker:
        """The network validation scores and checkpoints hold: the weight average when there is one."""
        return scored_model(self.model, self.averager)


def _region_indices(dataset, names: list[str], required: list[str]) -> dict[str, np.ndarray]:
    """The named regions the dataset's manifest defines, as vertex indices. A ``required`` one is read and checked
    (a missing, unreadable or out-of-range region file is an error naming it); another is read when its files are
    there (a damaged one is still an error), and left out when they are not, as an undefined name is, for
    :func:`_check_regions` to judge (VOCASET without FLAME_masks.pkl trains on lve.txt, EVE and FDD unscored)."""
    defined = dataset.manifest.regions
    return {name: np.asarray(dataset.region(name), dtype=np.int64) for name in dict.fromkeys(names)
            if name in defined and (name in required or dataset.region_present(name))}


def training_regions(dataset, loss, eye_pathway: bool = False) -> dict[str, np.ndarray]:
    """The regions a run reads: ``loss.lip_region`` (required), ``loss.eye_region`` (required when ``loss.eyes``
    weights it or the eye pathway needs it) and, under the key ``upper_face``, FDD's region: the first of its role's
    names (``mmtalker.eval.protocol.REGION_ROLES``) whose files are there, as ``mmtalker evaluate`` picks it."""
    from mmtalker.eval.protocol import REGION_ROLES

    needs_eyes = loss.eyes > 0 or eye_pathway
    regions = _region_indices(dataset, [loss.lip_region, loss.eye_region],
                              required=[loss.lip_region] + ([loss.eye_region] if needs_eyes else []))
    upper = next((name for name in REGION_ROLES["upper"] if dataset.region_present(name)), None)
    if upper is not None:
        regions["upper_face"] = np.asarray(dataset.region(upper), dtype=np.int64)
    return regions


def _check_regions(dataset, loss, regions: dict) -> str | None:
    """Refuse a region the ``loss`` settings need but the dataset lacks: ``loss.lip_region`` always (LVE and the lip
    weight, as ``mmtalker evaluate`` needs it), ``loss.eye_region`` when ``loss.eyes`` weights it. A dataset without
    an eye region or ``upper_face`` (BIWI, Multiface) trains with ``loss.eyes: 0``, EVE or FDD unscored: returns
    the one-line note that says so (None when every metric is scored)."""
    defined = f"its regions: {', '.join(dataset.manifest.regions) or 'none'}"
    if loss.lip_region not in regions:
        raise MMTalkerError("loss.lip_region", f"the dataset {dataset.root} has no region '{loss.lip_region}'",
                            f"{defined}; name its lip region")
    if loss.eye_region not in regions and loss.eyes > 0:
        raise MMTalkerError("loss.eye_region", f"the dataset {dataset.root} has no region '{loss.eye_region}', "
                            f"which loss.eyes ({loss.eyes:g}) weights",
                            f"{defined}; name its eye region, or set loss.eyes: 0 for a dataset without one")
    unscored = [f"{metric} (no region '{name}'{': its file is missing' if name in dataset.manifest.regions else ''})"
                for metric, name in (("EVE", loss.eye_region), ("FDD", "upper_face")) if name not in regions]
    return f"{dataset.root}: {' and '.join(unscored)} not scored" if unscored else None


def scored_test_splits(dataset, prefix: str, *, quiet: bool = False) -> dict:
    """split name -> sequences for every split whose name starts with ``data.test_split`` (``prefix``), which a run
    scores at its end. A prefix that names none, and a test file that cannot be read, are mistakes found before
    training, not after it."""
    found = {}
    if not prefix:  # "" would match every split, the training one too: it means no test split
        return found
    for name in (n for n in dataset.split_names if n.startswith(prefix)):
        try:
            found[name] = dataset.sequences(name)
        except MMTalkerError as exc:  # the split asked for must be there; another of its prefix may be absent
            if name == prefix:
                raise
            if not quiet:  # BIWI with Test-A's subjects only: test_b names the eight others
                print(f"mmtalker train: note: split '{name}' is not scored: {exc.problem}", file=sys.stderr)
    if prefix and not found:
        raise MMTalkerError("data.test_split", f"'{prefix}': no split of {dataset.root} starts with it",
                            f"its splits: {', '.join(dataset.split_names)}")
    # read once now: a damaged test file (NaN motion, empty audio) stops the run before training, not after it
    for seq in {s.key: s for seqs in found.values() for s in seqs}.values():
        seq.vertices()
        seq.audio()
    return found


def split_overlap_notes(train: list, others: dict[str, list]) -> list[str]:
    """A note for each validation or test split that shares sequences with the training split (a split file that
    reuses them): its scores are then not of unseen data."""
    trained = {s.key for s in train}
    notes = []
    for name, seqs in others.items():
        shared = sorted(s.key for s in seqs if s.key in trained)
        if shared:
            notes.append(f"split '{name}' shares {len(shared)} of its {len(seqs)} sequences with the training split "
                         f"(e.g. {shared[0]}): its scores are not of unseen speech")
    return notes


def _spread(items: list, count: int) -> list:
    """At most ``count`` items, evenly spread over the list (deterministic)."""
    if len(items) <= count:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def build_setup(config: TrainingConfig, device: torch.device, info: Dist) -> Setup:
    dataset = open_dataset(config.data.path, config.data.preset, fps=config.data.fps, splits=config.data.splits)
    train_seqs = dataset.sequences(config.data.train_split)
    val_seqs = dataset.sequences(config.data.val_split)
    if not train_seqs:
        raise MMTalkerError(config.data.path, f"split '{config.data.train_split}' has no sequences")
    test_seqs = scored_test_splits(dataset, config.data.test_split, quiet=not info.main)
    for note in split_overlap_notes(train_seqs, {config.data.val_split: val_seqs, **test_seqs}) if info.main else []:
        print(f"mmtalker train: note: {note}", file=sys.stderr)  # checked before the speech features are computed
    fps = float(train_seqs[0].fps)
    subjects = sorted({s.subject for s in train_seqs})
    lw = config.loss
    regions = training_regions(dataset, lw, config.model.eye_pathway)
    if config.model.eye_pathway and lw.eye_region not in regions:
        raise MMTalkerError(config.data.path, f"has no region '{lw.eye_region}' (loss.eye_region), which model.eye_pathway needs",
                            "set model.eye_pathway: false, as configs/mmtalker_biwi.yaml does, or name the dataset's eye region in loss.eye_region")
    note = _check_regions(dataset, lw, regions)
    if note and info.main:
        print(f"mmtalker train: note: {note}", file=sys.stderr)
    encoder = model_audio_encoder(config.model)
    model_config = dataclasses.replace(config.model, subjects=subjects, fps=fps, audio_dim=model_audio_dim(config.model, encoder))
    cache = FeatureCache(Path(config.data.cache_dir) if config.data.cache_dir else cache_dir() / "features")
    aug = config.augment
    common = dict(encoder=encoder, encoder_spec=feature_name(config.model), fps=fps, augment_config=aug, cache=cache,
                  prefix_states=prefix_states(config.model))  # a fine-tuned encoder: its frozen states, not features
    train_clips = load_clips(dataset, training_sequences(train_seqs, config.data.join_share, config.optim.seed), subjects,
                             variants=config.data.augment_variants, desc="audio features (train)", **common)
    val_clips = load_clips(dataset, _spread(val_seqs, config.data.val_max_clips), subjects, variants=0, desc="audio features (val)", **common)
    _maybe_preload(train_clips, config.data.preload_max_gb)

    topology = dataset.topology()
    uvmap = parameterize(topology)
    templates = np.stack([dataset.template(s) for s in subjects]).astype(np.float32)
    model = MMTalker(model_config, uvmap.faces, uvmap.vertex_uv, topology.vertices, templates, motion_scale(train_clips),
                     corner_uv=uvmap.uv[uvmap.faces_uv]).to(device)
    if model.audio_blocks is not None:
        start_blocks(model.audio_blocks, encoder, model_config)  # the pretrained blocks to start from (--resume then loads its own)
        model.audio_blocks.to(device)
    sampler = NonUniformSampler(uvmap, uniform_mix=config.sampler.uniform_mix, measure=config.sampler.measure).to(device)

    if model.eye is not None:
        model.set_eye_region(regions[lw.eye_region], f"{config.data.path}: region '{lw.eye_region}'")
    weights = {lw.lip_region: lw.lips, lw.eye_region: lw.eyes}
    vertex_weight = vertex_region_weight(model.num_vertices, {k: torch.from_numpy(v) for k, v in regions.items() if k in weights}, weights)
    lip_points = None
    if lw.lip_max > 0:
        if lw.lip_max_points < 1:
            raise MMTalkerError("loss.lip_max_points", f"must be at least 1 when loss.lip_max > 0, got {lw.lip_max_points}")
        face_of, bary = vertex_points(model.faces.cpu(), model.num_vertices)
        lips = torch.from_numpy(regions[lw.lip_region]).long()
        lip_points = (lips.to(device), face_of[lips].to(device), bary[lips].to(device))
    return Setup(dataset, train_clips, val_clips, test_seqs, model, sampler, regions, vertex_weight.to(device), encoder, fps,
                 lip_points=lip_points)


def _maybe_preload(clips: list, max_gb: float) -> None:
    clip_bytes = sum(c.num_frames * c.template.shape[0] * 12 / max(c.variants[0].stretch, 1e-6) for c in clips)
    if clip_bytes < max_gb * 2**30:
        for c in progress(clips, desc="loading motion", unit="clip"):
            c.preload()


# ------------------------------------------------------------------------------------------------- a step
def training_step(setup: Setup, net, config: TrainingConfig, clips: list, windows, gen: torch.Generator, device) -> dict:
    """One forward/backward pass on a batch of windows of ``clips`` (``windows``: their
    :class:`~mmtalker.train.data.Window` picks, or a numpy generator to draw them); returns the loss terms."""
    model, lw = setup.model, config.loss
    pts = setup.sampler.sample(config.sampler.points, generator=gen)
    face_idx, bary = pts.face_idx.to(device), pts.bary.to(device=device, dtype=torch.float32)
    uv = pts.uv.to(device=device, dtype=torch.float32)
    weight = pts.weight.to(device=device, dtype=torch.float32)
    if not config.sampler.learnable:
        weight = weight.detach()
    P = face_idx.shape[0]
    if setup.lip_points is not None:  # lip vertices appended after the sampled points, for the worst-vertex term
        lips, lip_face, lip_bary = setup.lip_points
        pick = torch.randperm(lips.shape[0], generator=gen)[: lw.lip_max_points].to(device)
        face_idx, bary = torch.cat([face_idx, lip_face[pick]]), torch.cat([bary, lip_bary[pick]])
        uv = torch.cat([uv, model.vertex_uv[lips[pick]]])
    corners = model.faces[face_idx]  # (P, 3)
    ids, inverse = torch.unique(corners, return_inverse=True)
    if isinstance(windows, np.random.Generator):
        windows = draw_windows(clips, windows, config.data.window_frames)
    feats = tuned_batch_features(model, clips, windows, device) if model.audio_blocks is not None else None
    batch = make_batch(clips, windows, config.data.window_frames, ids.cpu().numpy(), context=config.data.context_frames,
                       features=feats).to(device)
    target = torch.einsum("btpkc,pk->btpc", batch.disp[:, :, inverse], bary) / model.motion_scale  # (B, W, P, 3)

    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        pred = net(batch.audio, batch.subject, batch.templates, face_idx, bary, uv, batch.mask)
    pred = pred.float()
    on = batch.loss_mask  # the window's frames (context frames around it only inform the prediction)
    worst = frame_max_loss(pred[:, :, P:], target[:, :, P:], on) if setup.lip_points is not None else pred.new_zeros(())
    pred, target, face_idx, bary = pred[:, :, :P], target[:, :, :P], face_idx[:P], bary[:P]
    region_w = region_point_weight(setup.vertex_weight, model.faces, face_idx, bary)  # (P,)
    recon = reconstruction_loss(pred, target, weight, on, region_w)
    vel = velocity_loss(pred, target, weight, on, region_w)
    per_point = (point_errors(pred, target, region_w) * on.unsqueeze(-1)).sum((0, 1)) / on.sum()
    var = variance_loss(weight, per_point) if weight.requires_grad else pred.new_zeros(())
    loss = lw.reconstruction * recon + lw.velocity * vel + lw.sampler * var + lw.lip_max * worst
    loss.backward()
    terms = {"loss": loss.item(), "recon": recon.item(), "velocity": vel.item(), "sampler_var": var.item()}
    if setup.lip_points is not None:
        terms["lip_max"] = worst.item()
    return terms


def tuned_batch_features(model, clips: list, windows: list, device) -> dict:
    """A fine-tuned encoder's features of every clip variant the windows use (spliced partners too), made by
    ``model``'s current tuned blocks, each over its whole clip: {(id(clip), variant): (T', C) Tensor}."""
    needed = {}
    for clip, pick in zip(clips, windows):
        needed[id(clip), pick.variant] = (clip, pick.variant)
        if pick.partner is not None:
            mate, v2, _ = pick.partner
            needed[id(mate), v2] = (mate, v2)
    return {key: variant_features(clip, v, model, device) for key, (clip, v) in needed.items()}


# ---------------------------------------------------------------------------------------------- validation
@torch.no_grad()
def evaluate_clips(model: MMTalker, clips: list, regions: dict, device, *, desc: str) -> dict:
    """Dense prediction at the vertices of whole clips (clean audio); protocol metrics in the dataset unit.
    A model that fine-tunes its speech encoder makes the features with its own tuned blocks.

    ``regions`` maps ``lips``, ``eyes``, ``upper`` to vertex indices (absent: that metric is skipped).
    Also ``loss``: mean squared vertex error in motion units (what the reconstruction loss estimates).
    """
    model.eval()
    acc = MetricAccumulator(regions.get("lips"), regions.get("eyes"), regions.get("upper"))
    sq_sum, count = 0.0, 0
    for clip in progress(clips, desc=desc, unit="clip"):
        audio = variant_features(clip, 0, model, device)[None]
        subject = torch.tensor([clip.subject_index], device=device)
        template = torch.from_numpy(clip.template)[None].to(device)
        disp = model.predict_vertices(audio, subject, template)[0].float().cpu().numpy()  # (T, V, 3)
        truth = clip.displacement()
        n = min(len(disp), len(truth))
        acc.add(disp[:n] + clip.template, truth[:n] + clip.template, clip.template)
        sq_sum += float(np.square(disp[:n] - truth[:n], dtype=np.float64).sum(-1).mean()) * n
        count += n
    out = acc.result()
    out["loss"] = sq_sum / max(count, 1) / float(model.motion_scale) ** 2
    model.train()
    return out


def metric_regions(regions: dict, loss_cfg) -> dict:
    """The dataset's regions under the names evaluate_clips uses (lips, eyes, upper)."""
    names = {"lips": loss_cfg.lip_region, "eyes": loss_cfg.eye_region, "upper": "upper_face"}
    return {key: regions[name] for key, name in names.items() if name in regions}


# ------------------------------------------------------------------------------------------------ the loop
_DERIVED = ("subjects", "fps", "audio_dim")
"""Model settings a run derives from its data and encoder, not from the config file."""


def _unused_model_settings(asked: MMTalkerConfig, saved: dict) -> str:
    """``name config → run`` for each model setting of the config that differs from the resumed run's own."""
    asked = json.loads(json.dumps(dataclasses.asdict(asked)))  # tuples as lists, as config.json holds them
    return ", ".join(f"{k} {asked[k]!r} → {v!r}" for k, v in saved.items()
                     if k in asked and k not in _DERIVED and asked[k] != v)


def train(config: TrainingConfig, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Train MMTalker as ``config`` says into ``run_dir``; returns the final results (rank 0)."""
    run_dir = Path(run_dir)
    info, device = setup_distributed(config.optim.device)
    if info.main:
        prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    seed_everything(config.optim.seed + info.rank, config.optim.deterministic)  # dropout differs per rank
    # Batches and UV points come from generators seeded alike on every rank: each rank draws the whole
    # global batch (clips, variants, windows) and the same points, and trains on its slice of the batch, so
    # N processes with batch B see what one process with batch N*B sees.
    rng = np.random.default_rng(config.optim.seed)
    gen = torch.Generator(device="cpu").manual_seed(config.optim.seed + 1000)

    if resume:  # the run's own network, whatever the config file says now
        ckpt.check_resume_kind(run_dir, "mmtalker")  # a peer's run: refused before anything is built or written
        saved = ckpt.read_checkpoint_config(run_dir / "last")["model"]
        ignored = _unused_model_settings(config.model, saved)
        if ignored and info.main:
            print(f"mmtalker train: note: --resume keeps the run's own network; the config's model settings that differ "
                  f"from it are not used: {ignored}", file=sys.stderr)
        config = dataclasses.replace(config, model=build_dataclass(MMTalkerConfig, saved, str(run_dir / "last" / ckpt.CONFIG)))
    setup = build_setup(config, device, info)
    model, sampler = setup.model, setup.sampler
    if config.optim.ema:
        setup.averager = WeightAverage(model, config.optim.ema)
    net = torch.nn.parallel.DistributedDataParallel(model) if info.world > 1 else model
    opt = torch.optim.AdamW(param_groups(model.parameters(), model, config.optim), weight_decay=config.optim.weight_decay)
    optimizers = {"model": opt}
    if config.sampler.learnable and any(p.requires_grad for p in sampler.parameters()):
        optimizers["sampler"] = torch.optim.Adam(sampler.parameters(), lr=config.optim.sampler_lr)
    counters = {"epoch": 0, "step": 0, "best": None, "history": [], "elapsed_s": 0.0}
    if resume:
        state = ckpt.load_checkpoint(run_dir / "last", device)[0].state_dict()
        setup.scored_model.load_state_dict(state)  # last/ holds what was scored (with optim.ema, the average);
        # the trained weights themselves then come back with the training state
        counters = ckpt.load_training_state(run_dir / "last", optimizers, _state_modules(setup), rng, {"points": gen})
        # rank 0's torch RNG came with the training state; the others' are saved apart (a rank the run did
        # not have before gets a seed of its own: only its dropout masks depend on it)
        if not info.main and not ckpt.load_rank_rng(run_dir / "last", info.rank, counters["epoch"]):
            torch.manual_seed(config.optim.seed + info.rank + 7919 * counters["epoch"])
    if info.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "training_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        if not resume:  # --overwrite: the earlier run's epochs are not this run's (history.jsonl is appended to)
            (run_dir / "history.jsonl").unlink(missing_ok=True)

    regions = metric_regions(setup.regions, config.loss)
    budget_s = None if config.optim.max_minutes is None else config.optim.max_minutes * 60
    start = time.monotonic() - counters["elapsed_s"]
    groups = group_by_subject(setup.train_clips)
    last_plot = -math.inf

    while counters["epoch"] < config.optim.epochs:
        terms = _run_epoch(setup, net, config, optimizers, counters, groups, rng, gen, device, info, start, budget_s)
        counters["epoch"] += 1
        counters["elapsed_s"] = time.monotonic() - start
        stop = bool(budget_s) and _time_up(start, budget_s, info)
        if info.world > 1:  # the other ranks' RNGs first, so rank 0's training state never outruns them
            if not info.main:
                ckpt.save_rank_rng(run_dir / "last", info.rank, counters["epoch"])
            dist.barrier()
        if info.main:
            last = stop or counters["epoch"] == config.optim.epochs
            plot = last or time.monotonic() - last_plot > PLOT_EVERY_S
            last_plot = time.monotonic() if plot else last_plot
            _end_of_epoch(config, setup, run_dir, counters, terms, optimizers, (rng, gen), regions, device, plot)
        if info.world > 1:
            dist.barrier()
        if stop:
            break

    results = _finish(config, setup, run_dir, counters, regions, device) if info.main else {}
    if info.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return results


def steps_per_epoch(num_clips: int, world: int, batch_size: int) -> int:
    """Steps in an epoch: as many as one window per training clip fills, split over the ranks (the clips of each
    step are drawn at random: :func:`draw_batch`)."""
    return max(1, math.ceil(math.ceil(num_clips / world) / batch_size))


def param_groups(params, model: torch.nn.Module, optim) -> list[dict]:
    """AdamW's parameter groups for ``params`` (of ``model``): the network at ``optim.lr``; fine-tuned speech-encoder
    blocks (``model.audio_blocks``, those that train) apart, at ``optim.audio_lr``. Each group carries its peak rate
    as ``base_lr``. Both trainers use it."""
    params = list(params)
    blocks = getattr(model, "audio_blocks", None)
    tuned = {id(p) for p in blocks.parameters()} if blocks is not None else set()
    groups = [{"params": [p for p in params if id(p) not in tuned], "lr": optim.lr, "base_lr": optim.lr}]
    if blocks is not None:
        groups.append({"params": [p for p in params if id(p) in tuned and p.requires_grad], "lr": optim.audio_lr,
                       "base_lr": optim.audio_lr})
    return groups


def _set_lr(optimizers: dict, config: TrainingConfig, progress_fraction: float, step: int) -> None:
    factor = lr_factor(progress_fraction, step, config.optim.warmup_steps, config.optim.min_lr_ratio)
    for name, opt in optimizers.items():
        default = config.optim.sampler_lr if name == "sampler" else config.optim.lr
        for group in opt.param_groups:
            group["lr"] = group.get("base_lr", default) * factor


def _run_epoch(setup, net, config, optimizers, counters, groups, rng, gen, device, info, start, budget_s) -> dict:
    """One epoch of steps (stopping early when the time budget is spent); returns the mean loss terms."""
    n_steps = steps_per_epoch(len(setup.train_clips), info.world, config.optim.batch_size)
    total_steps = n_steps * config.optim.epochs
    sums: dict[str, float] = {}
    bar = progress(range(n_steps), desc=f"epoch {counters['epoch'] + 1}/{config.optim.epochs}", unit="step") if info.main else range(n_steps)
    done = 0
    for _ in bar:
        # the schedule follows whichever is further along: the step count or the clock
        elapsed = time.monotonic() - start
        _set_lr(optimizers, config, max(counters["step"] / total_steps, elapsed / budget_s if budget_s else 0.0), counters["step"])
        # the global batch (every rank draws it alike), then this rank's slice
        B = config.optim.batch_size
        clips = [setup.train_clips[j] for j in draw_batch(groups, B * info.world, config.data.subjects_per_batch, rng)]
        windows = draw_windows(clips, rng, config.data.window_frames, config.data.splice_prob,
                               config.data.cover_edges)
        mine = slice(info.rank * B, (info.rank + 1) * B)
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        terms = training_step(setup, net, config, clips[mine], windows[mine], gen, device)
        if info.world > 1:
            _average_grads(setup.sampler)
        torch.nn.utils.clip_grad_norm_(setup.model.parameters(), config.optim.grad_clip)
        for opt in optimizers.values():
            opt.step()
        if setup.averager is not None:
            setup.averager.update(setup.model, counters["step"])
        counters["step"] += 1
        done += 1
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v
        if info.main and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{terms['loss']:.4f}")
        if budget_s and _time_up(start, budget_s, info):
            break
    return {k: v / max(done, 1) for k, v in sums.items()}


def group_by_subject(clips: list) -> list[np.ndarray]:
    """Indices of ``clips`` grouped by subject (in first-seen order)."""
    subjects = list(dict.fromkeys(c.subject for c in clips))
    return [np.array([i for i, c in enumerate(clips) if c.subject == s]) for s in subjects]


def draw_batch(groups: list[np.ndarray], batch_size: int, subjects_per_batch: int | None, rng: np.random.Generator) -> np.ndarray:
    """Clip indices of one batch: ``subjects_per_batch`` subjects drawn in proportion to their clip counts
    (None: all), then ``batch_size`` of their clips without replacement (with replacement if too few).

    Fewer subjects per batch means fewer distinct templates for the geometry encoder to run on.
    """
    sizes = np.array([len(g) for g in groups], dtype=np.float64)
    k = len(groups) if subjects_per_batch is None else min(subjects_per_batch, len(groups))
    chosen = rng.choice(len(groups), size=k, replace=False, p=sizes / sizes.sum())
    pool = np.concatenate([groups[j] for j in chosen])
    return rng.choice(pool, size=batch_size, replace=len(pool) < batch_size)


def _time_up(start: float, budget_s: float, info: Dist) -> bool:
    """Whether the time budget is spent, agreed by all ranks (rank 0's clock decides)."""
    flag = torch.tensor([float(time.monotonic() - start > budget_s)])
    if info.world > 1:
        dist.broadcast(flag, 0)
    return bool(flag.item())


def _average_grads(module: torch.nn.Module) -> None:
    """Average gradients over ranks for a module DDP does not wrap (the sampler)."""
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= dist.get_world_size()


def _extras(config: TrainingConfig, setup: Setup, counters: dict, metrics: dict) -> dict:
    m = setup.dataset.manifest
    return {
        "training": config.to_dict(),
        "dataset": {"name": m.name, "path": str(config.data.path), "fps": setup.fps, "units": m.units, "num_vertices": setup.model.num_vertices},
        "epoch": counters["epoch"],
        "step": counters["step"],
        "metrics": metrics,
    }


def record_epoch(counters: dict, train_terms: dict, val: dict, select_metric: str) -> tuple[dict, bool]:
    """Append this epoch's record to ``counters["history"]``; returns it and whether ``select_metric``
    (the training loss when validation lacks it) improved, updating ``counters["best"]`` if so. A loss or score
    that is no longer finite stops the run here, before this epoch's weights are saved over the last good ones."""
    bad = [f"train {k}" for k, v in train_terms.items() if isinstance(v, float) and not math.isfinite(v)]
    bad += [f"val {k}" for k, v in val.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise MMTalkerError("training", f"diverged in epoch {counters['epoch']}: {', '.join(bad[:3])} not finite",
                            "lower optim.lr (or optim.audio_lr)" + ("; best/ and last/ hold the epochs before it"
                                                                   if counters["epoch"] > 1 else ""))
    score = val.get(select_metric, train_terms.get("loss"))
    record = {"epoch": counters["epoch"], "step": counters["step"], "elapsed_s": round(counters["elapsed_s"], 1),
              "train": train_terms, "val": {k: v for k, v in val.items() if isinstance(v, float)}}
    counters["history"].append(record)
    improved = counters["best"] is None or score < counters["best"]["score"]
    if improved:
        counters["best"] = {"score": score, "metric": select_metric, "epoch": counters["epoch"]}
    return record, improved


def _end_of_epoch(config, setup, run_dir, counters, train_terms, optimizers, rngs, regions, device, plot: bool) -> None:
    """Validate, log, keep last and best checkpoints, redraw the curves."""
    scored = setup.scored_model
    val = evaluate_clips(scored, setup.val_clips, regions, device, desc="validation") if setup.val_clips else {}
    record, improved = record_epoch(counters, train_terms, val, config.optim.select_metric)
    if improved:
        ckpt.save_checkpoint(run_dir / "best", scored, _extras(config, setup, counters, record["val"]))
    ckpt.save_checkpoint(run_dir / "last", scored, _extras(config, setup, counters, record["val"]))
    rng, gen = rngs  # numpy's (batches) and torch's UV-point generator
    ckpt.save_training_state(run_dir / "last", optimizers, _state_modules(setup), counters, rng, {"points": gen})
    with open(run_dir / "history.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    if plot:
        plot_curves(counters["history"], run_dir / "curves.png")
    print(f"epoch {counters['epoch']}: train loss {train_terms.get('loss', float('nan')):.4g}; "
          f"{epoch_scores(record['val'], setup.dataset.manifest.units, improved, config.optim.select_metric)}", flush=True)


def epoch_scores(val: dict, units: dict, improved: bool, metric: str) -> str:
    """An epoch's validation scores as the log shows them: LVE and EVE at the dataset's report scale, as every
    table shows them, and whether this epoch is the best so far by the checkpoint-picking ``metric``."""
    from mmtalker.eval.report import number, squared_unit

    if not val:
        return "no validation" + (f" (best train {metric} so far)" if improved else "")
    scale = float(units.get("report_scale", 1.0))
    parts = [f"loss {val['loss']:.4g}"] if "loss" in val else []
    if "mve" in val:
        parts.append(f"MVE {val['mve']:.4g} {units.get('length', '')}".rstrip())
    squared = [f"{k.upper()} {number(val[k] * scale)}" for k in ("lve", "eve") if k in val]
    if squared:
        parts.append(", ".join(squared) + f" ({squared_unit(units)})")
    return "val " + ", ".join(parts) + (f"; best {metric.upper()} so far: saved to best/" if improved else "")


def _state_modules(setup: Setup) -> dict:
    """Modules the training state keeps besides the checkpoint's network: the sampler, and the trained
    weights when the checkpoint holds their average."""
    return {"sampler": setup.sampler, **raw_state(setup.model, setup.averager)}


def _finish(config, setup, run_dir, counters, regions, device) -> dict:
    """Score the test split with the best weights; write results.json."""
    best, _, extras = ckpt.load_checkpoint(run_dir / "best", device)
    results = {"best_epoch": counters["best"]["epoch"] if counters["best"] else None, "epochs": counters["epoch"],
               "steps": counters["step"], "train_minutes": round(counters["elapsed_s"] / 60, 2), "val": extras.get("metrics", {})}
    enc = dict(encoder=setup.encoder, encoder_spec=feature_name(config.model), fps=setup.fps, augment_config=config.augment,
               cache=FeatureCache(Path(config.data.cache_dir) if config.data.cache_dir else cache_dir() / "features"),
               prefix_states=prefix_states(best.config))
    for split, sequences in setup.test_sequences.items():
        clips = load_clips(setup.dataset, sequences, best.config.subjects, variants=0, desc=f"audio features ({split})", **enc)
        results[split] = evaluate_clips(best, clips, regions, device, desc=split)
    results.update(reference_scores(setup.dataset.manifest))
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def reference_scores(manifest) -> dict:
    """What a run's ``results.json`` carries beside its own scores, for every model kind: the reference scores the
    synthetic benchmark's manifest holds (``oracle_floor``, ``static_baseline``) and the scores' ``units``."""
    extra = getattr(manifest, "extra", None) or {}
    out = {key: extra[key] for key in ("oracle_floor", "static_baseline") if key in extra}
    out["units"] = manifest.units  # the scores' units and report scale
    return out
