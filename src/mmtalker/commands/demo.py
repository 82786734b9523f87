"""``mmtalker demo``: the main job on the built-in default, from nothing to a video of the face talking.

Each step writes into the demo folder and is skipped when its output is already there, so a second run
(or a run after an interruption) picks up where the last one stopped; nothing is deleted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmtalker.errors import MMTalkerError

REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="generate the synthetic benchmark, train MMTalker, score it and render a video (the README's main command)",
        description=(
            "The main job on the built-in default data, in five steps, each skipped when its output exists: "
            "1) generate the synthetic talking-face benchmark (real synthetic speech, a real face, ground truth and "
            "its oracle error floor); 2) draw a preview sheet; 3) train MMTalker on it (about 15 minutes on 2 CPU "
            "cores; --minutes changes the budget); 4) score it on unseen sentences and unseen subjects next to the "
            "oracle floor; 5) animate a sentence the model never saw and render truth | MMTalker side by side as an "
            "mp4 with the speech."
        ),
        epilog="example: mmtalker demo --out runs/demo --minutes 15",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="demo folder (default runs/demo)")
    p.add_argument("--preset", default="default", help="benchmark preset: default, tiny, large or wide-test (mmtalker data synth --help; default: default)")
    p.add_argument("--minutes", type=float, default=15.0, help="training budget in minutes (default 15)")
    p.add_argument("--config", type=Path, default=REPO_CONFIGS / "mmtalker_synth.yaml", help="training config")
    p.add_argument("--seed", type=int, default=0, help="seed of the benchmark and the training (default 0)")
    p.set_defaults(func=run)


def _step(number: int, text: str) -> None:
    print(f"\n[{number}/5] {text}", flush=True)


def _call(argv: list[str]) -> None:
    from mmtalker.cli import main

    code = main(argv)
    if code != 0:
        raise MMTalkerError(f"mmtalker {' '.join(argv[:2])}", f"failed (exit {code}); see the message above")


def _data(args, data: Path) -> None:
    _step(1, f"synthetic benchmark in {data}")
    if (data / "manifest.json").is_file():
        _check_same(data / "manifest.json", _made_with(data), {"preset": args.preset, "seed": args.seed}, args.out)
        print("  already there: using it")
    else:
        from mmtalker.data.writer import is_ours_started

        again = is_ours_started(data)  # an interrupted generation: made again from the start (it takes a minute)
        if again:
            print("  an interrupted benchmark is there: making it again")
        _call(["data", "synth", "--out", str(data), "--preset", args.preset, "--seed", str(args.seed)]
              + (["--overwrite"] if again else []))
    _call(["inspect", str(data)])


def _made_with(data: Path) -> dict:
    """The preset and seed the benchmark in ``data`` was generated with ({} when its manifest does not say)."""
    try:
        generator = json.loads((data / "manifest.json").read_text()).get("extra", {}).get("generator", {})
    except (OSError, ValueError, AttributeError):
        return {}  # `mmtalker inspect` in the same step names what is wrong with the manifest
    return {k: generator[k] for k in ("preset", "seed") if k in generator}


def _trained_with(run: Path) -> dict:
    """The budget (minutes) and seed the finished run in ``run`` was trained with ({} when unknown)."""
    try:
        optim = json.loads((run / "training_config.json").read_text()).get("optim", {})
    except (OSError, ValueError, AttributeError):
        return {}
    found = {"minutes": optim.get("max_minutes"), "seed": optim.get("seed")}
    return {k: v for k, v in found.items() if v is not None}


def _check_same(path: Path, found: dict, asked: dict, out: Path) -> None:
    """A step's output from an earlier demo run is reused only when it was made with the settings asked for now."""
    differ = [f"{k} {found[k]!r} (asked: {asked[k]!r})" for k in asked if k in found and not _same(found[k], asked[k])]
    if differ:
        raise MMTalkerError(path, "made by an earlier demo run with other settings: " + ", ".join(differ),
                            f"delete {out} to start over with the new settings, or pass --out DIR for a second demo")


def _same(a, b) -> bool:
    """Settings alike: equal as numbers (15 and 15.0 minutes), else as text ('tiny')."""
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _preview(data: Path, png: Path) -> None:
    _step(2, f"preview sheet {png}")
    if png.is_file():
        print("  already there")
    else:
        _call(["data", "preview", str(data), "--out", str(png)])


def _train(args, data: Path, run: Path) -> Path:
    _step(3, f"training MMTalker into {run} (budget {args.minutes:g} min)")
    best = run / "best"
    if (run / "results.json").is_file() and (best / "config.json").is_file():
        _check_same(run / "training_config.json", _trained_with(run), {"minutes": args.minutes, "seed": args.seed}, args.out)
        print("  already trained: using it (delete the folder to train again)")
        return best
    if not args.config.is_file():
        raise MMTalkerError(args.config, "training config not found", "run the demo from the repository root or pass --config")
    argv = ["train", "--config", str(args.config), "--data", str(data), "--out", str(run),
            "--max-minutes", str(args.minutes), "--seed", str(args.seed)]
    if (run / "last" / "training_state.json").is_file():
        print("  an interrupted run is there: resuming it")
        argv.append("--resume")
    _call(argv)
    return best


def _evaluate(data: Path, best: Path, out: Path) -> None:
    _step(4, "scores on sentences and subjects the model never saw, next to the benchmark's floor")
    from mmtalker.data.dataset import open_dataset

    splits = [s for s in open_dataset(data).split_names if s.startswith("test")]
    for split in splits:
        scores = out / f"scores_{split}.json"
        argv = ["evaluate", "--data", str(data), "--split", split, "--checkpoint", str(best), "--oracle",
                "--json", str(scores), "--overwrite"]
        _call(argv)


def _video(data: Path, best: Path, out: Path) -> None:
    _step(5, "a sentence the model never saw: truth | MMTalker, with the speech")
    import numpy as np

    from mmtalker.audio.io import SAMPLE_RATE, save_wav
    from mmtalker.data.dataset import open_dataset
    from mmtalker.inference.api import MMTalker
    from mmtalker.progress import progress
    from mmtalker.render.compose import side_by_side_frames
    from mmtalker.render.export import export_npz
    from mmtalker.render.video import fit_audio, write_video

    video = out / "demo.mp4"
    if video.is_file():
        print(f"  {video} already there")
        return
    dataset = open_dataset(data)
    seq = dataset.sequences("test")[0]
    talker = MMTalker.from_pretrained(best)
    style = seq.subject if seq.subject in talker.styles else None
    pred = talker.animate(seq.audio(), style=style, template=dataset.template(seq.subject))
    truth = seq.vertices()
    n = min(len(pred), len(truth))
    export_npz(out / "demo_animation.npz", pred, fps=talker.fps, faces=dataset.topology().faces, overwrite=True)
    wav = out / "demo_speech.wav"
    save_wav(wav, fit_audio(seq.audio(), n, talker.fps, SAMPLE_RATE), overwrite=True)
    frames = side_by_side_frames([truth[:n], pred[:n]], dataset.topology().faces,
                                 captions=["truth", "MMTalker"], width=384, height=384)
    write_video(video, progress(frames, desc="render", total=n, unit="frame"), talker.fps, audio_path=wav)
    lve = float(np.mean(np.max(np.sum((pred[:n] - truth[:n])[:, dataset.region("lips")] ** 2, -1), 1)))
    print(f"  sentence {seq.key} ({n / talker.fps:.1f} s, \"{_text(dataset, seq)}\"): LVE {lve:.3g} m²")
    print(f"  wrote {video} (open it: truth on the left, MMTalker on the right)")


def _text(dataset, seq) -> str:
    """The sentence's text, when the manifest records it (the synthetic benchmark does)."""
    sentences = dataset.manifest.extra.get("sentences", {})
    return next((group[seq.sentence] for group in sentences.values() if seq.sentence in group), "")


def run(args: argparse.Namespace) -> int:
    from mmtalker.synth.generate import load_preset

    load_preset(args.preset)  # an unknown preset fails here, with the list, before anything is made
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    _data(args, data)
    _preview(data, out / "preview.png")
    best = _train(args, data, out / "mmtalker")
    _evaluate(data, best, out)
    _video(data, best, out)
    print(f"\ndone: everything is in {out}/ (preview.png, mmtalker/curves.png, scores_*.json, demo.mp4)")
    summary = {"data": str(data), "checkpoint": str(best), "video": str(out / "demo.mp4")}
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    return 0
