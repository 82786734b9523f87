"""StackedLayers: an encoder's last layer with other hidden states beside it (MMTalker's eye pathway reads them)."""

from __future__ import annotations

import pytest
import torch

from mmtalker.audio.encoders import AudioEncoder, StackedLayers
from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.errors import MMTalkerError


class LayeredEncoder(AudioEncoder):
    """Three 'layers': the audio's mean, max and min over each 160-sample frame, 4 channels each."""

    def __init__(self):
        super().__init__(trainable=False)
        self.dim, self.rate, self.num_layers = 4, SAMPLE_RATE / 160, 3

    def num_frames_for(self, num_samples):
        return num_samples // 160

    def hidden_states(self, audio):
        frames = audio[:, : audio.shape[1] // 160 * 160].reshape(audio.shape[0], -1, 160)
        layers = [frames.mean(-1), frames.amax(-1), frames.amin(-1)]
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


def test_a_layer_the_encoder_does_not_have_is_refused():
    with pytest.raises(MMTalkerError, match="hidden states 0 to 2; asked for \\[3\\]"):
        StackedLayers(LayeredEncoder(), [3], "fake")
