"""``mmtalker evaluate``: LVE, EVE, FDD and MVE of models or saved predictions, by one protocol."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from mmtalker.commands.options import add_device_option, check_output_file
from mmtalker.errors import MMTalkerError


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score checkpoints or saved predictions (LVE, EVE, FDD, MVE) on a dataset split",
        description=(
            "Score models by the community's protocol (docs/evaluation.md): LVE = per frame the max over lip "
            "vertices of the squared L2 error, averaged over all frames of all sequences; EVE the same over the "
            "eye region; FDD = upper-face dynamics deviation (truth minus prediction, signed; |FDD| too); MVE = "
            "mean L2 vertex error. Predictions come from --checkpoint folders or from --pred folders of .npy files "
            "named <subject>_<sentence>.npy or <subject>_<sentence>_condition_<style>.npy (FaceFormer's and "
            "CodeTalker's outputs), so the peers' own repositories can be scored by the same rules."
        ),
        epilog=("example: mmtalker evaluate --pred out/faceformer --name FaceFormer --data data/vocaset --split test "
                "--regions lips=FLAME_masks.pkl:lips eyes=FLAME_masks.pkl:eye_region upper=regions/fdd.txt"),
    )
    p.add_argument("--data", type=Path, required=True, help="dataset folder (any layout 'mmtalker inspect' reads)")
    p.add_argument("--preset", help="dataset preset for a processed folder without manifest (vocaset, biwi, multiface)")
    p.add_argument("--splits", type=Path, metavar="FILE", help="a split JSON file replacing the dataset's splits (docs/datasets.md)")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--checkpoint", type=Path, action="append", default=[], help="a trained model's folder (repeatable)")
    add_device_option(p, "--checkpoint models")
    p.add_argument("--unseen-styles", choices=("mean", "all"), default="mean",
                   help="how a --checkpoint animates a subject it did not train on: 'mean' (default) once, in the mean of "
                        "its training styles; 'all' once per training style, each scored as its own sequence, as "
                        "FaceFormer's and CodeTalker's test scripts count their condition files")
    p.add_argument("--pred", type=Path, action="append", default=[], help="a folder of saved predictions (repeatable)")
    p.add_argument("--name", action="append", default=[], help="display names for the --pred folders, in order")
    p.add_argument("--oracle", action="store_true", help="also score the synthetic benchmark's oracle (the error floor) afresh; without it the "
                   "table ends with the floor the benchmark recorded when it was made, and each model's LVE ÷ floor (where it applies: "
                   "not with --regions or --splits, nor for a model missing sequences; docs/evaluation.md)")
    p.add_argument("--regions", nargs="+", metavar="ROLE=FILE[:KEY]",
                   help="region files for lips, eyes and upper (face): e.g. lips=FLAME_masks.pkl:lips upper=fdd.txt")
    p.add_argument("--per-subject", action="store_true", help="also print each subject's scores")
    p.add_argument("--json", type=Path, help="write all scores to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    p.set_defaults(func=run)


def _parse_regions(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        role, sep, spec = item.partition("=")
        if not sep or role not in ("lips", "eyes", "upper"):
            raise MMTalkerError("--regions", f"'{item}' is not ROLE=FILE with ROLE one of lips, eyes, upper")
        out[role] = spec
    return out


def _split_file_notes(checkpoints: list[Path], splits: Path | None) -> list[str]:
    """A note for each checkpoint trained with a split file (``data.splits``) other than the ``--splits`` given:
    scored by other splits, the sequences may include ones it trained on."""
    from mmtalker.data.manifest import load_splits
    from mmtalker.train.checkpoint import read_checkpoint_meta, trained_split_file

    def content(path):
        try:
            return load_splits(path)
        except MMTalkerError:
            return None

    given = None if splits is None else content(splits)
    notes = []
    for ckpt in checkpoints:
        trained = trained_split_file(read_checkpoint_meta(ckpt))
        if not trained:
            continue
        same = splits is not None and (str(trained) == str(splits) or (given is not None and content(trained) == given))
        if not same:
            scored_by = "the dataset's own splits" if splits is None else f"the split file {splits}"
            notes.append(f"{ckpt} was trained with the split file {trained}; scored by {scored_by}, the sequences may "
                         f"include ones it trained on (pass --splits {trained} to score it by its own splits)")
    return notes


def _dataset_notes(checkpoints: list[Path], manifest) -> list[str]:
    """A note for each checkpoint trained on another dataset than the one scored (by the name its checkpoint records),
    and for each whose frame rate differs from the dataset's (its predictions are resampled to the dataset's)."""
    from mmtalker.train.checkpoint import read_checkpoint_meta

    notes = []
    for ckpt in checkpoints:
        trained = (read_checkpoint_meta(ckpt).get("extras") or {}).get("dataset") or {}
        name, fps = trained.get("name"), trained.get("fps")
        if name and name != manifest.name:
            notes.append(f"{ckpt} was trained on the dataset '{name}' ({trained.get('path', 'path not recorded')}); "
                         f"it is scored here on '{manifest.name}'")
        length = (trained.get("units") or {}).get("length")
        if length and length != manifest.units.get("length"):
            notes.append(f"{ckpt} was trained on motion in '{length}'; this dataset's is in "
                         f"'{manifest.units.get('length')}': its predictions are in the wrong unit unless the two agree")
        if isinstance(fps, (int, float)) and abs(float(fps) - float(manifest.fps)) > 1e-6:
            notes.append(f"{ckpt} animates at {fps:g} fps; its predictions are resampled to the dataset's {manifest.fps:g} fps "
                         "before scoring")
    return notes


def _sources(args, dataset, notes: list[str]):
    from mmtalker.eval.protocol import folder_predictor

    sources = []
    names = list(args.name)
    if len(names) > len(args.pred):
        raise MMTalkerError("--name", f"gives {len(names)} names for {len(args.pred)} --pred folders",
                            "one --name per --pred, in order (checkpoints are named by their kind and run folder)")
    for k, folder in enumerate(args.pred):
        sources.append((names[k] if k < len(names) else folder.name, folder_predictor(folder, dataset.manifest.num_vertices, notes)))
    loaded = []
    if args.checkpoint:  # scoring saved predictions alone needs no torch
        from mmtalker.inference.evaluate import checkpoint_predictor  # MMTalker or a peer, by the checkpoint's kind

        loaded = [(Path(ckpt), *checkpoint_predictor(ckpt, dataset, unseen_styles=args.unseen_styles, device=args.device))
                  for ckpt in args.checkpoint]
    counts = Counter(name for _, name, _ in loaded)
    for ckpt, name, predict in loaded:
        # several checkpoints of one kind ("CodeTalker (best)" twice): name each by its run folder too
        sources.append((f"{name} [{ckpt.absolute().parent.name}]" if counts[name] > 1 else name, predict))
    if args.oracle:
        sequences = dataset.sequences(args.split)
        if sequences and sequences[0].oracle() is None:
            raise MMTalkerError(args.data, "has no oracle motion to score with --oracle",
                                "only the synthetic benchmark (`mmtalker data synth`) has one, in oracle_npy/")

        def oracle(seq):
            o = seq.oracle()
            return [] if o is None else [o]

        sources.append((ORACLE_NAME, oracle))
    if not sources:
        raise MMTalkerError("evaluate", "nothing to score", "give --checkpoint, --pred or --oracle")
    twice = [name for name, n in Counter(name for name, _ in sources).items() if n > 1]
    if twice:  # the --json file keys its models by name: one would overwrite the other
        raise MMTalkerError("evaluate", f"two models would be called '{twice[0]}'",
                            "give each --pred its own --name, and each checkpoint once")
    return sources


ORACLE_NAME = "oracle (floor)"


def format_table(results, units: dict, floor: dict | None = None) -> str:
    """A Markdown table of the overall scores, scaled for reading, with the units in the header and each
    model's sequence count; ``floor``: the benchmark's recorded oracle scores for the split (the manifest's
    ``oracle_floor``) as a last row, with each model's LVE as a multiple of it. With the oracle scored afresh
    as one of the rows (``--oracle``), the ratio is to that row."""
    from mmtalker.eval.report import score_table

    oracle = next((r.overall for r in results if r.name == ORACLE_NAME), None)
    return score_table([(r.name, r.overall) for r in results], units, floor, sequences=True,
                       ratio_to=None if floor else oracle, complete={r.name for r in results if not r.missing})


def run(args: argparse.Namespace) -> int:
    from mmtalker.data.dataset import open_dataset
    from mmtalker.eval.protocol import regions_for, score
    from mmtalker.eval.report import score_table

    check_output_file(args.json, args.overwrite, "--json")  # before the scoring, not after it
    dataset = open_dataset(args.data, preset=args.preset, splits=args.splits)
    if args.split not in dataset.split_names:
        raise MMTalkerError(args.data, f"has no split '{args.split}'", f"splits: {', '.join(dataset.split_names)}")
    regions = regions_for(dataset, _parse_regions(args.regions))
    sequences = dataset.sequences(args.split)
    reading_notes: list[str] = []  # what reading the --pred files changed (resampled, cut), said once each
    sources = _sources(args, dataset, reading_notes)
    for note in _split_file_notes(args.checkpoint, args.splits) + _dataset_notes(args.checkpoint, dataset.manifest):
        print(f"mmtalker evaluate: note: {note}", file=sys.stderr)
    results = [score(name, sequences, predict, dataset, regions) for name, predict in sources]
    for note in reading_notes:
        print(f"mmtalker evaluate: note: {note}", file=sys.stderr)
    units = dataset.manifest.units
    print(f"{dataset.manifest.name}, split '{args.split}': {len(sequences)} sequences at {dataset.manifest.fps:g} fps")
    for role, src in regions.sources.items():
        print(f"  {role}: {src}")
    # the synthetic benchmark records its oracle's scores per split (in the dataset's own units) when it is made;
    # with --oracle the oracle was just scored as a row of its own
    recorded_floor = dataset.manifest.extra.get("oracle_floor", {}).get(args.split)
    if recorded_floor and (args.regions or args.splits) and not args.oracle:
        # the recorded floor was measured on the manifest's regions and the generator's splits, not on these
        print(f"mmtalker evaluate: note: the benchmark's recorded floor is left out: it was measured on "
              f"{'the manifest regions' if args.regions else 'its own splits'}, not on the "
              f"{'--regions' if args.regions else '--splits'} given (add --oracle to score the floor on them)",
              file=sys.stderr)
        recorded_floor = None
    print(format_table(results, units, None if args.oracle else recorded_floor))
    for r in results:
        if r.missing:
            print(f"mmtalker evaluate: note: {r.name} was scored on {len(sequences) - len(r.missing)} of the split's "
                  f"{len(sequences)} sequences: no prediction for {len(r.missing)} (e.g. {r.missing[0]})"
                  + ("; its LVE ÷ floor is left out" if recorded_floor and not args.oracle else ""), file=sys.stderr)
        if args.per_subject:
            print(f"\n{r.name}, per subject:")
            print(score_table(list(r.per_subject.items()), units, sequences=True, label="subject"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "dataset": dataset.manifest.name, "split": args.split, "units": units, "regions": regions.sources,
            "oracle_floor": recorded_floor,
            "models": {r.name: {"overall": r.overall, "per_subject": r.per_subject, "missing": r.missing,
                                "per_vertex_sq_error": [float(x) for x in r.per_vertex]} for r in results},
        }, indent=2))
        print(f"wrote {args.json}")
    return 0
