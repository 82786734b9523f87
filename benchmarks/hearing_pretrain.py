"""Teach Whisper's tuned blocks to name phones before the motion training: a start for `model.audio_init`.

Every measurement on the synthetic benchmark puts most of the distance to the oracle floor in *hearing* the
phones (docs/results.md, fourteenth to sixteenth rounds). This script trains the Whisper blocks a config tunes
(`model.audio_finetune` to the last state it reads) with a linear head that names each mesh frame's phones
(cross-entropy against the phones' shares of the frame, from the synthetic benchmark's `alignments/`), on the
training split of DATA, and saves the blocks for a config's `model.audio_init`:

    mmtalker data synth --out data/synth_large --preset large              # 128 training sentences per speaker
    python benchmarks/hearing_pretrain.py --data data/synth_large --eval data/synth --out runs/hearing/blocks.safetensors
    mmtalker train --config configs/mmtalker_synth.yaml --data data/synth \
        --set model.audio_init=runs/hearing/blocks.safetensors

The benchmark's generator draws every sentence for one split only (a hash of its words), so a `large` set's
training sentences never include the default set's validation or test sentences; `large` with the same seed
also holds the default set's 32 training sentences per speaker. `--eval` prints the share of frames whose
largest phone is named right on the other data's val / test / test_unseen_subjects splits after every epoch,
with the blocks frozen (`--lr 0`) a baseline for the head alone. Only the blocks are saved; the head is dropped.
Made with the same seed and data, the file is the same on the same machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mmtalker.audio.encoders import features_at_fps, model_audio_encoder  # noqa: E402
from mmtalker.audio.finetune import TunedBlocks, frozen_prefix, prefix_states, save_blocks  # noqa: E402
from mmtalker.audio.spec import split_spec  # noqa: E402
from mmtalker.data.dataset import open_dataset  # noqa: E402
from mmtalker.errors import MMTalkerError  # noqa: E402
from mmtalker.progress import progress  # noqa: E402
from mmtalker.train.config import load_config  # noqa: E402
from phonetic_ceiling import _key, phone_track  # noqa: E402

EVAL_SPLITS = ("val", "test", "test_unseen_subjects")


def phone_vocab(sequences) -> dict[str, int]:
    """Every phone symbol of the sequences' alignments (``<unk>`` first, for phones of other data)."""
    vocab = {"<unk>": 0}
    for seq in sequences:
        phones = seq.alignment()
        if not phones:
            raise MMTalkerError(seq.key, "has no phone alignment", "this needs the synthetic benchmark's alignments/ "
                                "(mmtalker data synth)")
        for p in phones:
            vocab.setdefault(_key(p["symbol"]), len(vocab))
    return vocab


class PhoneHead(nn.Module):
    """The tuned blocks' states at the mesh fps -> phone logits per frame (a LayerNorm and one linear map)."""

    def __init__(self, blocks: TunedBlocks, phones: int, fps: float):
        super().__init__()
        width = blocks.width * len(blocks.reads)
        self.blocks, self.fps = blocks, fps
        self.norm, self.out = nn.LayerNorm(width), nn.Linear(width, phones)

    def forward(self, prefix: torch.Tensor, frames: int) -> torch.Tensor:  # (1, Ta, K·D) -> (frames, phones)
        return self.out(self.norm(features_at_fps(self.blocks(prefix), self.blocks.rate, self.fps, frames)))[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a synthetic benchmark folder (with alignments/) whose --split it learns from")
    ap.add_argument("--split", default="train", help="the split of --data to learn from (default train)")
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "mmtalker_synth.yaml"),
                    help="the training config whose model.audio_encoder and model.audio_finetune say which blocks "
                         "(default configs/mmtalker_synth.yaml: whisper-tiny.en's blocks 1-4, the same as every synth config)")
    ap.add_argument("--out", required=True, help="the .safetensors file to write (model.audio_init)")
    ap.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    ap.add_argument("--eval", default=None, help="a benchmark folder whose val/test splits are scored after each epoch")
    ap.add_argument("--epochs", type=int, default=4, help="passes over the clips (default 4)")
    ap.add_argument("--lr", type=float, default=1e-4, help="the blocks' peak rate (default 1e-4; 0 freezes them: a baseline)")
    ap.add_argument("--head-lr", type=float, default=1e-3, help="the phone head's peak rate (default 1e-3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise MMTalkerError(str(out), "already exists", "pass --overwrite to replace it, or choose another --out")
    if args.epochs < 1 or args.lr < 0 or args.head_lr <= 0:
        raise MMTalkerError("options", "--epochs must be at least 1, --lr 0 or more and --head-lr above 0")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    model_config = load_config(args.config).model
    if not getattr(model_config, "audio_finetune", 0):
        raise MMTalkerError(args.config, "tunes no Whisper blocks (model.audio_finetune is 0)", "name a config that sets it")
    encoder = model_audio_encoder(model_config)
    blocks = TunedBlocks(model_config, encoder.layer_dim)  # as the trainer makes them, whatever the model kind
    blocks.copy_from(encoder)
    states = prefix_states(model_config)

    train = open_dataset(args.data).sequences(args.split)
    fps = float(train[0].fps)
    vocab = phone_vocab(train)
    evals = {}
    if args.eval:
        eval_data = open_dataset(args.eval)
        evals = {name: eval_data.sequences(name) for name in EVAL_SPLITS if name in eval_data.split_names}

    def item(seq):
        audio = torch.from_numpy(np.ascontiguousarray(seq.audio(), dtype=np.float32))[None]
        shares = phone_track(seq, vocab, fps)[:, : len(vocab)]
        return frozen_prefix(encoder, audio, states), torch.from_numpy(shares)

    items = [item(s) for s in progress(train, desc="frozen states (train)", unit="clip")]
    eval_items = {name: [item(s) for s in progress(seqs, desc=f"frozen states ({name})", unit="clip")]
                  for name, seqs in evals.items()}
    print(f"{len(items)} clips of {args.data} ({args.split}), {len(vocab) - 1} phones; Whisper blocks "
          f"{blocks.first}-{blocks.last} of {model_config.audio_encoder} {'tuned' if args.lr else 'frozen'}", flush=True)

    head = PhoneHead(blocks, len(vocab), fps)
    if not args.lr:  # the head alone; else the blocks train as copy_from left them (ln_post only as the last block's)
        blocks.requires_grad_(False)
    groups = [{"params": [*head.norm.parameters(), *head.out.parameters()], "lr": args.head_lr}]
    if args.lr > 0:
        groups.append({"params": [p for p in blocks.parameters() if p.requires_grad], "lr": args.lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    peaks = [g["lr"] for g in opt.param_groups]
    steps, step = args.epochs * len(items), 0

    def heard_right(clips) -> float:
        head.eval()
        hit = total = 0
        with torch.no_grad():
            for prefix, shares in clips:
                hit += int((head(prefix, shares.shape[0]).argmax(-1) == shares.argmax(-1)).sum())
                total += shares.shape[0]
        head.train()
        return hit / max(total, 1)

    for epoch in range(args.epochs):
        start, total = time.time(), 0.0
        for i in progress(rng.permutation(len(items)), desc=f"epoch {epoch + 1}/{args.epochs}", unit="clip"):
            prefix, shares = items[i]
            decay = 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * step / steps))  # cosine to 5 %, after 100 warmup steps
            for g, peak in zip(opt.param_groups, peaks):
                g["lr"] = peak * min(1.0, (step + 1) / 100) * decay
            loss = -(shares * head(prefix, shares.shape[0]).log_softmax(-1)).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
            opt.step()
            step += 1
            total += float(loss.detach())
        scores = ", ".join(f"{name} {heard_right(clips):.1%}" for name, clips in eval_items.items())
        print(f"epoch {epoch + 1}: loss {total / len(items):.3f}, {time.time() - start:.0f} s"
              + (f"; frames named right: {scores}" if scores else ""), flush=True)

    out.parent.mkdir(parents=True, exist_ok=True)
    save_blocks(blocks, out, split_spec(model_config.audio_encoder)[0])
    print(f"wrote {out}: set model.audio_init to it (with model.audio_finetune {blocks.first})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MMTalkerError as err:
        sys.exit(f"error: {err}")
