"""``mmtalker report``: a Markdown table and figures comparing the models of ``evaluate --json`` files."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmtalker.commands.options import check_output_folder
from mmtalker.errors import MMTalkerError


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write a Markdown comparison with bar charts and per-vertex error heatmaps",
        description=(
            "Compare every model in one or more 'mmtalker evaluate --json' files (files of one split scored alike, as "
            "separate evaluate runs of each model give them, make one comparison): writes report.md with a table per "
            "split (units stated; the oracle floor when it was scored), metrics_<split>.png bar "
            "charts of LVE, EVE and |FDD|, and, with --data, heatmap_<split>.png: each model's per-vertex error "
            "rendered on the face."
        ),
        epilog="example: mmtalker report runs/cmp/scores_test.json --data data/synth --out runs/cmp/report",
    )
    p.add_argument("scores", nargs="+", type=Path, help="JSON files written by 'mmtalker evaluate --json'")
    p.add_argument("--data", type=Path, help="the dataset (for the heatmaps' face)")
    p.add_argument("--preset", help="dataset preset for a processed --data folder without manifest (vocaset, biwi, multiface)")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--overwrite", action="store_true", help="replace the report.md (and figures) already in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmtalker.eval.report import write_report

    check_output_folder(args.out)
    if (args.out / "report.md").exists() and not args.overwrite:
        raise MMTalkerError(args.out / "report.md", "already exists", "pass --overwrite or choose another --out")
    dataset = None
    if args.data is not None:
        from mmtalker.data.dataset import open_dataset

        dataset = open_dataset(args.data, preset=args.preset)
    elif args.preset is not None:
        raise MMTalkerError("--preset", "applies to --data, which is not given", "add --data DIR, or drop --preset")
    md = write_report(args.scores, args.out, dataset)
    print(f"wrote {md}")
    return 0
