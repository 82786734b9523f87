"""``mmtalker train``: train MMTalker or a peer (VOCA, FaceFormer, CodeTalker) as a YAML config says."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train MMTalker or a peer (VOCA, FaceFormer, CodeTalker) from a config file",
        description=(
            "Train MMTalker, or a peer whose config says 'kind: voca|faceformer|codetalker', on a dataset (the "
            "synthetic benchmark, VOCASET, BIWI or Multiface layouts) as a YAML "
            "config says (see configs/). Audio features are cached on disk on the first run. Each epoch is "
            "validated; the run folder keeps best/ and last/ checkpoints (safetensors + config.json), "
            "history.jsonl, curves.png and, at the end, results.json with the test scores. Launch with torchrun "
            "to use several GPUs or nodes: 'torchrun --nproc_per_node 4 -m mmtalker train --config ...'."
        ),
        epilog="example: mmtalker train --config configs/mmtalker_synth.yaml --data data/synth --out runs/synth",
    )
    p.add_argument("--config", type=Path, required=True, help="YAML training config (e.g. configs/mmtalker_synth.yaml)")
    p.add_argument("--data", help="dataset folder (default: the config's data.path)")
    p.add_argument("--preset", help="community layout preset for --data (vocaset, biwi, multiface)")
    p.add_argument("--out", type=Path, help="run folder (default: runs/<config name>)")
    p.add_argument("--epochs", type=int, help="number of epochs (default: the config's optim.epochs)")
    p.add_argument("--max-minutes", type=float, help="stop after this many minutes of training, after validating")
    p.add_argument("--batch-size", type=int, help="clips per step and process")
    p.add_argument("--seed", type=int, help="random seed (default: the config's)")
    p.add_argument("--deterministic", action="store_true", help="use deterministic algorithms only")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the config's optim.device; under torchrun each process takes its local rank's GPU)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last/")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out (files there are replaced)")
    p.set_defaults(func=run)


def overrides_from_args(args: argparse.Namespace) -> dict:
    """Command-line options as config overrides ({section: {key: value}})."""
    out: dict = {"data": {}, "optim": {}}
    for section, key, value in [
        ("data", "path", args.data), ("data", "preset", args.preset), ("optim", "epochs", args.epochs),
        ("optim", "max_minutes", args.max_minutes), ("optim", "batch_size", args.batch_size),
        ("optim", "seed", args.seed), ("optim", "device", args.device),
    ]:
        if value is not None:
            out[section][key] = value
    if args.deterministic:
        out["optim"]["deterministic"] = True
    return out


def run(args: argparse.Namespace) -> int:
    from mmtalker.errors import MMTalkerError
    from mmtalker.train.config import load_config
    from mmtalker.train.loop import train
    from mmtalker.train.peers import is_peer_config, train_from_file

    if args.resume and args.overwrite:
        raise MMTalkerError("--resume/--overwrite", "choose one: continue the run, or write a new one over it")
    out = args.out or Path("runs") / args.config.stem
    if is_peer_config(args.config):  # a config with `kind: voca | faceformer | codetalker`
        results = train_from_file(args.config, overrides_from_args(args), out, resume=args.resume, overwrite=args.overwrite)
    else:
        config = load_config(args.config, overrides_from_args(args))
        results = train(config, out, resume=args.resume, overwrite=args.overwrite)
    if results:
        print(json.dumps(results, indent=2))
        print(f"checkpoints in {out}/best and {out}/last; curves in {out}/curves.png")
    return 0
