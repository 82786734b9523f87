"""Joined training clips (data.join_share): two clips of one subject back to back, sound aligned to motion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.errors import MMTalkerError
from mmtalker.train.config import DataConfig
from mmtalker.train.joined import JoinedSequence, join_sequences, training_sequences


@dataclass(eq=False)
class FakeSeq:
    key: str
    subject: str
    num_frames: int
    samples: int
    fps: float = 30.0
    level: float = 1.0

    def audio(self):
        return np.full(self.samples, self.level, np.float32)

    def vertices(self):
        return np.full((self.num_frames, 2, 3), self.level, np.float32)


def test_each_part_sounds_exactly_over_its_own_frames():
    """The first part's audio longer than its motion is cut, the second's shorter one is padded with silence:
    every frame of the joined clip hears its own part."""
    a = FakeSeq("s1_a", "s1", 30, SAMPLE_RATE + 500, level=1.0)  # 1 s of motion, 1.03 s of audio
    b = FakeSeq("s1_b", "s1", 45, SAMPLE_RATE, level=2.0)  # 1.5 s of motion, 1 s of audio
    j = JoinedSequence([a, b])
    audio = j.audio()
    assert j.num_frames == 75 and len(audio) == int(round(75 * SAMPLE_RATE / 30))
    second = SAMPLE_RATE  # frame 30 starts at 1 s
    assert np.all(audio[:second] == 1.0)  # part a up to its last frame, its extra 500 samples dropped
    assert np.all(audio[second : 2 * second] == 2.0)  # part b's 1 s of audio
    assert np.all(audio[2 * second :] == 0.0)  # then silence to the end of b's motion
    v = j.vertices()
    assert v.shape == (75, 2, 3) and np.all(v[:30] == 1.0) and np.all(v[30:] == 2.0)
    assert j.key == "s1_a+s1_b" and j.subject == "s1" and j.fps == 30.0


def test_parts_must_share_subject_and_fps():
    with pytest.raises(ValueError, match="share subject"):
        JoinedSequence([FakeSeq("a", "s1", 3, 10), FakeSeq("b", "s2", 3, 10)])
    with pytest.raises(ValueError, match="share subject"):
        JoinedSequence([FakeSeq("a", "s1", 3, 10), FakeSeq("b", "s1", 3, 10, fps=25.0)])
    with pytest.raises(ValueError, match="at least two"):
        JoinedSequence([FakeSeq("a", "s1", 3, 10)])


def test_joined_clips_pair_two_different_clips_of_one_subject():
    seqs = [FakeSeq(f"s{k}_{i}", f"s{k}", 10, 100) for k in (1, 2) for i in range(3)] + [FakeSeq("s3_0", "s3", 10, 100)]
    joined = join_sequences(seqs, 2.0, np.random.default_rng(0))
    assert len(joined) == 14  # round(2.0 × 7)
    for j in joined:
        first, second = j.parts
        assert first is not second and first.subject == second.subject != "s3"  # s3 has one clip: never joined
    assert join_sequences(seqs, 0.0, np.random.default_rng(0)) == []
    again = training_sequences(seqs, 0.5, seed=4)
    assert again[:7] == seqs and [j.key for j in again[7:]] == [j.key for j in training_sequences(seqs, 0.5, seed=4)[7:]]
    assert len(again) == 7 + 4  # round(0.5 × 7) = 4 (banker's rounding of 3.5)


def test_config_refuses_a_negative_share():
    with pytest.raises(MMTalkerError, match="join_share"):
        DataConfig(join_share=-0.5).check("config.yaml")


def test_training_setups_add_the_joined_clips_with_aligned_features(tmp_path):
    """MMTalker's and the peers' setups train on the split's clips plus the joined ones, each with as many
    feature frames as motion frames, seam included."""
    from pathlib import Path

    import torch

    from fake_talk import write_fake_dataset
    from mmtalker.train.config import load_config
    from mmtalker.train.loop import Dist, build_setup
    from mmtalker.train.peers import build_peer_setup, load_peer_config

    root = write_fake_dataset(tmp_path / "data")  # 2 subjects × 3 training clips
    configs = Path(__file__).resolve().parents[1] / "configs"
    data = {"path": str(root), "cache_dir": str(tmp_path / "cache"), "augment_variants": 0, "join_share": 0.5}
    mm = build_setup(load_config(configs / "mmtalker_synth.yaml", {"data": data, "model": {"audio_encoder": "logmel", "audio_finetune": 0},
                                                                     "optim": {"device": "cpu"}}), torch.device("cpu"), Dist())
    peer = build_peer_setup(load_peer_config(configs / "voca_synth.yaml", {"data": data, "model": {"audio_encoder": "logmel", "audio_finetune": 0},
                                                                           "optim": {"device": "cpu"}}), torch.device("cpu"))
    for clips in (mm.train_clips, peer.train_clips):
        joined = [c for c in clips if "+" in c.key]
        assert len(clips) == 6 + 3 and len(joined) == 3
        for c in joined:
            first, second = c.sequence.parts
            assert c.num_frames == first.num_frames + second.num_frames == c.displacement().shape[0]
            assert c.subject == first.subject == second.subject
