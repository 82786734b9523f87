"""StackedLayers: an encoder's main layer(s) with other hidden states beside them (MMTalker's eye pathway reads
them); HiddenLayer and the "@N" / "@N+M" spec suffix: reading other hidden states than the last."""

from __future__ import annotations

import pytest
import torch

from mmtalker.audio.encoders import AudioEncoder, HiddenLayer, StackedLayers, build_audio_encoder, split_spec
from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.errors import MMTalkerError


class LayeredEncoder(AudioEncoder):
    """Three 'layers': the audio's mean, max and min over each 160-sample frame, 4 channels each."""

    def __init__(self):
        super().__init__(trainable=False)
        self.dim, self.rate, self.num_layers = 4, SAMPLE_RATE / 160, 3

    def num_frames_for(self, num_samples):
        return num_samples // 160

    def hidden_states(self, audio, upto=None):
        """All three, or with ``upto`` only those up to it (as Whisper does: later blocks are not run)."""
        frames = audio[:, : audio.shape[1] // 160 * 160].reshape(audio.shape[0], -1, 160)
        layers = [frames.mean(-1), frames.amax(-1), frames.amin(-1)][: None if upto is None else upto + 1]
        return torch.stack([x[..., None].expand(-1, -1, 4) for x in layers], dim=1)

    def forward(self, audio):
        return self.hidden_states(audio)[:, -1]


def test_stacked_layers_put_the_last_layer_first_then_the_extra_ones():
    base = LayeredEncoder()
    audio = torch.randn(2, 1600)
    stacked = StackedLayers(base, [0], "fake")
    out = stacked(audio)
    states = base.hidden_states(audio)
    assert stacked.dim == 8 and out.shape == (2, 10, 8) and stacked.num_frames_for(1600) == 10
    assert stacked.rate == base.rate
    assert torch.equal(out[..., :4], states[:, -1]) and torch.equal(out[..., 4:], states[:, 0])
    assert torch.equal(StackedLayers(base, [1, -3], "fake")(audio)[..., 8:], states[:, 0])
    # its hidden states are the base's, as its num_layers says (not its own stacked output as one layer)
    assert stacked.num_layers == 3 and torch.equal(stacked.hidden_states(audio), states)
    assert torch.equal(stacked.hidden_states(audio, upto=0), base.hidden_states(audio, upto=0))


def test_a_layer_the_encoder_does_not_have_is_refused():
    with pytest.raises(MMTalkerError, match="hidden states 0 to 2; asked for \\[3\\]"):
        StackedLayers(LayeredEncoder(), [3], "fake")


def test_hidden_layer_reads_the_chosen_state_and_stacking_follows_it():
    base = LayeredEncoder()
    audio = torch.randn(2, 1600)
    states = base.hidden_states(audio)
    middle = HiddenLayer(base, [1], "fake@1")
    assert torch.equal(middle(audio), states[:, 1]) and middle.main_layers == (1,)
    assert middle.dim == 4 and middle.layer_dim == 4 and middle.num_layers == 3 and middle.num_frames_for(1600) == 10
    assert torch.equal(middle.hidden_states(audio), states)
    assert HiddenLayer(base, [-3], "fake@-3").main_layers == (0,)
    stacked = StackedLayers(middle, [0], "fake@1")(audio)  # the main stream is the chosen layer, not the last
    assert torch.equal(stacked[..., :4], states[:, 1]) and torch.equal(stacked[..., 4:], states[:, 0])
    with pytest.raises(MMTalkerError, match="hidden states 0 to 2; asked for \\[3\\]"):
        HiddenLayer(base, [3], "fake@3")


def test_hidden_layers_side_by_side_in_the_order_given():
    base = LayeredEncoder()
    audio = torch.randn(2, 1600)
    states = base.hidden_states(audio)
    pair = HiddenLayer(base, [2, 0], "fake@2+0")
    out = pair(audio)
    assert pair.dim == 8 and pair.layer_dim == 4 and out.shape == (2, 10, 8) and pair.main_layers == (2, 0)
    assert torch.equal(out[..., :4], states[:, 2]) and torch.equal(out[..., 4:], states[:, 0])
    stacked = StackedLayers(pair, [1], "fake@2+0")  # extra states go after both main ones, each layer_dim wide
    got = stacked(audio)
    assert stacked.dim == 12 and stacked.layer_dim == 4
    assert torch.equal(got[..., :8], out) and torch.equal(got[..., 8:], states[:, 1])
    with pytest.raises(MMTalkerError, match="twice"):
        HiddenLayer(base, [2, -1], "fake@2+-1")  # -1 is 2 here


def test_spec_suffix_names_the_layer():
    assert split_spec("whisper-tiny.en@2") == ("whisper-tiny.en", [2])
    assert split_spec("whisper-tiny.en@-1") == ("whisper-tiny.en", [-1])
    assert split_spec("whisper-tiny.en@3+2") == ("whisper-tiny.en", [3, 2])
    assert split_spec("whisper-tiny.en") == ("whisper-tiny.en", None)
    assert split_spec("hf:/models/me@home/wavlm") == ("hf:/models/me@home/wavlm", None)  # an @ in a path is kept
    assert split_spec("hf:/models/wavlm@6") == ("hf:/models/wavlm", [6])
    assert split_spec("hf:/models/wavlm@6+") == ("hf:/models/wavlm@6+", None)
    with pytest.raises(MMTalkerError, match="twice"):
        split_spec("whisper-tiny.en@3+3")
    with pytest.raises(MMTalkerError, match="one layer"):
        build_audio_encoder("logmel@1")
    with pytest.raises(MMTalkerError, match="unknown"):
        build_audio_encoder("nothing@2")


def test_whisper_at_a_layer_equals_that_hidden_state():
    audio = torch.randn(1, SAMPLE_RATE) * 0.1
    last = build_audio_encoder("whisper-tiny.en")
    second = build_audio_encoder("whisper-tiny.en@2")
    states = last.hidden_states(audio)
    assert torch.allclose(second(audio), states[:, 2], atol=1e-6)
    assert torch.allclose(build_audio_encoder("whisper-tiny.en@-1")(audio), last(audio), atol=1e-6)
    early = last.hidden_states(audio, upto=2)  # the blocks after the second are not run
    assert early.shape[1] == 3 and torch.allclose(early, states[:, :3], atol=1e-6)
    assert not second.training and not any(p.requires_grad for p in second.parameters())
    with pytest.raises(MMTalkerError, match="hidden states 0 to 4; asked for \\[5\\]"):
        build_audio_encoder("whisper-tiny.en@5")
    both = build_audio_encoder("whisper-tiny.en@3+2")
    assert both.dim == 768 and both.layer_dim == 384
    assert torch.allclose(both(audio), torch.cat([states[:, 3], states[:, 2]], dim=-1), atol=1e-6)
