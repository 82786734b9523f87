"""``mmtalker train``: train MMTalker or a peer (VOCA, FaceFormer, CodeTalker) as a YAML config says."""

from __future__ import annotations

import argparse
from pathlib import Path


DESCRIPTION = """\
Train MMTalker, or a peer whose config says 'kind: voca|faceformer|codetalker', on a dataset
(the synthetic benchmark, VOCASET, BIWI or Multiface layouts) as a YAML config says (see
configs/). Audio features are cached on disk on the first run. Each epoch is validated; the
run folder keeps best/ and last/ checkpoints (safetensors + config.json), history.jsonl,
curves.png and, at the end, results.json with the test scores. Launch with torchrun to use
several GPUs or nodes: 'torchrun --nproc_per_node 4 -m mmtalker train --config ...'."""

EPILOG = """\
examples:
  mmtalker train --config configs/mmtalker_synth.yaml --data data/synth --out runs/synth
  mmtalker train --config configs/voca_synth.yaml --set model.audio_finetune=2 --set optim.audio_lr=1e-4
  mmtalker train --config configs/mmtalker_synth.yaml --out runs/synth --resume"""


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train MMTalker or a peer (VOCA, FaceFormer, CodeTalker) from a config file",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, required=True, help="YAML training config (e.g. configs/mmtalker_synth.yaml)")
    p.add_argument("--data", help="dataset folder (default: the config's data.path)")
    p.add_argument("--preset", help="community layout preset for --data (vocaset, biwi, multiface)")
    p.add_argument("--splits", metavar="FILE", help="a split JSON file replacing the dataset's splits (default: the config's data.splits; "
                   "docs/datasets.md)")
    p.add_argument("--out", type=Path, help="run folder (default: runs/<config name>)")
    p.add_argument("--epochs", type=int, help="number of epochs (default: the config's optim.epochs)")
    p.add_argument("--max-minutes", type=float, help="stop after this many minutes of training, after validating")
    p.add_argument("--batch-size", type=int, help="clips per step and process")
    p.add_argument("--seed", type=int, help="random seed (default: the config's)")
    p.add_argument("--deterministic", action="store_true", help="use deterministic algorithms only")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the config's optim.device; under torchrun each process takes its local rank's GPU)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="change one of the config's settings for this run (repeatable; the value is read as YAML: "
                        "2, 1e-4, true, [1, 2], null); the run folder's training_config.json records the result")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last/")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out (the run's files there are replaced, history.jsonl started afresh; others are left)")
    p.set_defaults(func=run)


def parse_setting(text: str) -> tuple[list[str], object]:
    """``"model.audio_finetune=2"`` -> (["model", "audio_finetune"], 2): a ``--set`` option's dotted name and its
    value read as YAML the way config files are (``1e-4`` is a number); MMTalkerError when malformed."""
    import yaml

    from mmtalker.errors import MMTalkerError
    from mmtalker.train.config import load_yaml

    where = f"--set {text}"
    name, eq, raw = text.partition("=")
    keys = [k.strip() for k in name.split(".")]
    if not eq or len(keys) < 2 or not all(keys):
        raise MMTalkerError(where, "expected SECTION.KEY=VALUE", "e.g. --set model.audio_finetune=2 or --set optim.lr=3e-4")
    if not raw.strip():
        raise MMTalkerError(where, "has no value", "write null to unset a setting")
    try:
        value = load_yaml(raw)
    except yaml.YAMLError:
        raise MMTalkerError(where, f"the value {raw!r} is not valid YAML", "quote the whole option for the shell: "
                            "--set 'stages.train=[1, 2]'") from None
    return keys, value


def overrides_from_args(args: argparse.Namespace) -> dict:
    """Command-line options as config overrides ({section: {key: value}}): the ``--set`` ones, then the options
    with their own flag (``--epochs``, ``--seed``, …); a setting given both ways is an error."""
    from mmtalker.errors import MMTalkerError

    out: dict = {"data": {}, "optim": {}}
    for text in args.settings:
        keys, value = parse_setting(text)
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise MMTalkerError(f"--set {text}", f"'{key}' is set to a value by another --set, not a section")
        if isinstance(node.get(keys[-1]), dict):
            raise MMTalkerError(f"--set {text}", f"'{'.'.join(keys)}' is a section; set its keys one by one")
        node[keys[-1]] = value
    for section, key, flag, value in [
        ("data", "path", "--data", args.data), ("data", "preset", "--preset", args.preset),
        ("data", "splits", "--splits", args.splits),
        ("optim", "epochs", "--epochs", args.epochs), ("optim", "max_minutes", "--max-minutes", args.max_minutes),
        ("optim", "batch_size", "--batch-size", args.batch_size), ("optim", "seed", "--seed", args.seed),
        ("optim", "device", "--device", args.device),
        ("optim", "deterministic", "--deterministic", True if args.deterministic else None),
    ]:
        if value is None:
            continue
        if key in out[section]:
            raise MMTalkerError(f"--set {section}.{key}", f"is also given by its own option ({flag})", "give it once")
        out[section][key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from mmtalker.commands.options import check_output_folder
    from mmtalker.errors import MMTalkerError
    from mmtalker.train.config import load_config
    from mmtalker.train.loop import train
    from mmtalker.train.peers import is_peer_config, train_from_file

    if args.resume and args.overwrite:
        raise MMTalkerError("--resume/--overwrite", "choose one: continue the run, or write a new one over it")
    out = args.out or Path("runs") / args.config.stem
    check_output_folder(out)
    overrides = overrides_from_args(args)
    where = " ".join([str(args.config), *(f"--set {s}" for s in args.settings)])  # errors name the --set options too
    if is_peer_config(args.config):  # a config with `kind: voca | faceformer | codetalker`
        results = train_from_file(args.config, overrides, out, resume=args.resume, overwrite=args.overwrite, where=where)
    else:
        config = load_config(args.config, overrides, where=where)
        results = train(config, out, resume=args.resume, overwrite=args.overwrite)
    if results:
        print(summary(results, out))
    return 0


_NOT_SPLITS = ("val", "oracle_floor", "static_baseline", "units")


def _split_file(out: Path):
    """The split file (data.splits) the run in ``out`` trained with, or None."""
    import json

    try:
        return (json.loads((out / "training_config.json").read_text()).get("data") or {}).get("splits")
    except (OSError, ValueError, AttributeError):
        return None


def summary(results: dict, out: Path) -> str:
    """What a finished run prints: its length, the test splits' scores with the best weights (the benchmark's
    recorded floor under each, when it has one) in the dataset's units, and where everything is."""
    from mmtalker.eval.report import score_table

    units = results.get("units") or {}
    floors = results.get("oracle_floor") or {}
    if floors and _split_file(out):  # the floor was recorded on the generator's splits, not on a split file's
        floors = {}
    rows = []
    for split, scores in results.items():
        if split in _NOT_SPLITS or not isinstance(scores, dict) or "lve" not in scores:
            continue
        rows.append((split, scores))
        if isinstance(floors.get(split), dict):
            rows.append((f"{split}: oracle floor", floors[split]))
    lines = [f"trained {results.get('epochs')} epoch{'' if results.get('epochs') == 1 else 's'} in {results.get('train_minutes')} min; the best "
             f"(epoch {results.get('best_epoch')}) scored on the test splits:"]
    lines += [score_table(rows, units, sequences=True, label="split")] if rows else ["  (no test split scored)"]
    lines.append(f"all scores in {out}/results.json; checkpoints in {out}/best and {out}/last; curves in {out}/curves.png")
    return "\n".join(lines)
