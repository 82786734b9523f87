"""Speech-encoder specs as strings: ``"name"`` or ``"name@N"`` / ``"name@N+M…"`` (hidden states N, M, … side
by side). Pure parsing, so model configs can count their feature streams without loading an encoder."""

from __future__ import annotations

from mmtalker.errors import MMTalkerError


def split_spec(spec: str) -> tuple[str, list[int] | None]:
    """``"name@3"`` -> ``("name", [3])``, ``"name@3+2"`` -> ``("name", [3, 2])``; a spec whose text after its
    last ``@`` is not integers joined by ``+`` (no suffix, or an ``@`` inside a path) -> ``(spec, None)``.
    A layer named twice is refused."""
    name, at, tail = spec.rpartition("@")
    parts = tail.split("+")
    if not (at and name and all(p.lstrip("-").isdigit() for p in parts)):
        return spec, None
    layers = [int(p) for p in parts]
    if len(set(layers)) != len(layers):
        raise MMTalkerError(f"audio encoder {spec!r}", f"names a hidden state twice ({tail})")
    return name, layers


def main_streams(spec: str) -> int:
    """How many hidden states the spec's features put side by side (1 without a suffix: the last layer)."""
    layers = split_spec(spec)[1]
    return len(layers) if layers else 1
