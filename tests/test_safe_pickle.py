"""mmtalker.data.safe_pickle: numpy arrays and plain containers load; anything that imports code is refused."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess

import numpy as np
import pytest

from mmtalker.data.safe_pickle import load_pickle
from mmtalker.errors import MMTalkerError


def _write(tmp_path, obj, protocol, name="data.pkl"):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def _assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


SAMPLE = {
    "lips": np.array([3, 1, 4, 1, 5], dtype=np.int64),
    "weights": np.linspace(0, 1, 7, dtype=np.float32),
    "grid": np.arange(12, dtype=np.float64).reshape(3, 4),
    "scalar": np.float32(2.5),
    "plain": [1, 2.5, "text", b"bytes", None, True, (1, 2), {3, 4}, frozenset([5]), complex(1, 2)],
}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_all_protocols_round_trip(tmp_path, protocol):
    _assert_same(load_pickle(_write(tmp_path, SAMPLE, protocol)), SAMPLE)


def test_protocol2_dict_of_arrays_exact(tmp_path):
    masks = {f"set{i}": np.random.default_rng(i).integers(0, 5023, size=50 + i) for i in range(5)}
    _assert_same(load_pickle(_write(tmp_path, masks, 2)), masks)


def _py2_str(data: bytes) -> bytes:
    """A Python 2 ``str`` as pickle protocol 2 writes it (SHORT_BINSTRING / BINSTRING)."""
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data
    return b"T" + struct.pack("<i", len(data)) + data


def _py2_array(arr: np.ndarray) -> bytes:
    """Opcode for opcode what NumPy under Python 2 writes for a 1-D little-endian array (protocol 2)."""
    dtype = arr.dtype.str[1:].encode()
    return (
        b"cnumpy.core.multiarray\n_reconstruct\n"
        + b"cnumpy\nndarray\n" + b"K\x00\x85" + _py2_str(b"b") + b"\x87R"
        + b"(K\x01" + b"J" + struct.pack("<i", arr.shape[0]) + b"\x85"
        + b"cnumpy\ndtype\n" + _py2_str(dtype) + b"K\x00K\x01\x87R"
        + b"(K\x03" + _py2_str(b"<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        + b"\x89" + _py2_str(arr.astype(arr.dtype.newbyteorder("<")).tobytes()) + b"tb"
    )


def test_python2_pickle_with_byte_strings(tmp_path):
    """A Python 2 pickle (FLAME_masks.pkl style): str keys and array data as byte strings, read via latin1."""
    masks = {"lips": np.array([1, 2, 2, 300, 70000], dtype=np.int64), "eye_region": np.arange(400, dtype=np.int64)}
    body = b"".join(_py2_str(k.encode()) + _py2_array(v) for k, v in masks.items())
    path = tmp_path / "FLAME_masks.pkl"
    path.write_bytes(b"\x80\x02}(" + body + b"u.")
    _assert_same(load_pickle(path), masks)


class _Marker:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


class _Popen:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (subprocess.Popen, (["touch", self.path],))


class _Eval:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (eval, (f"open({self.path!r}, 'w').close()",))


@pytest.mark.parametrize("payload,refused", [(_Marker, r"(os|posix|nt)\.system"), (_Popen, "subprocess.Popen"), (_Eval, "builtins.eval")])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_malicious_pickle_refused_and_not_run(tmp_path, payload, refused, protocol):
    marker = tmp_path / "PWNED"
    path = _write(tmp_path, {"lips": np.arange(3), "x": payload(marker)}, protocol, name="evil.pkl")
    with pytest.raises(MMTalkerError, match=f"refusing to load evil.pkl: it asks to import {refused}") as err:
        load_pickle(path)
    assert "only numpy arrays and plain containers are allowed" in str(err.value)
    assert not marker.exists()


def test_codecs_encode_only_latin1(tmp_path):
    path = tmp_path / "codec.pkl"
    # _codecs.encode("x", "rot13") through REDUCE: an allowed global with a refused argument.
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(MMTalkerError, match="latin-1"):
        load_pickle(path)


def test_other_numpy_globals_refused(tmp_path):
    path = tmp_path / "np.pkl"
    path.write_bytes(b"\x80\x02cnumpy\nload\nX\x03\x00\x00\x00a.bq\x00\x85R.")
    with pytest.raises(MMTalkerError, match="numpy.load"):
        load_pickle(path)


_HUGE = b"\x8a\x05" + (10**12).to_bytes(5, "little")  # LONG1 10**12


@pytest.mark.parametrize(
    "body,problem",
    [
        (b"cnumpy\nndarray\n" + _HUGE + b"\x85\x85R.", "TypeError"),  # ndarray((10**12,)): not callable
        (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _HUGE + b"\x85U\x01b\x87R.", "numpy pickles ask for"),
        (b"c__builtin__\nbytearray\n" + _HUGE + b"\x85R.", "bytearray is only allowed"),
        (b"cnumpy.core.multiarray\n_reconstruct\nc__builtin__\nset\nK\x00\x85U\x01b\x87R.", "only allowed for numpy.ndarray"),
    ],
)
def test_allowed_callables_cannot_reserve_huge_memory(tmp_path, body, problem):
    path = tmp_path / "bomb.pkl"
    path.write_bytes(b"\x80\x02" + body)
    with pytest.raises(MMTalkerError, match="not a readable pickle") as err:
        load_pickle(path)
    assert problem in str(err.value)


def test_truncated_and_garbage(tmp_path):
    data = pickle.dumps(SAMPLE, protocol=2)
    for cut in (1, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{cut}.pkl"
        path.write_bytes(data[:cut])
        with pytest.raises(MMTalkerError, match="truncated") as err:
            load_pickle(path)
        assert path.name in str(err.value)
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(MMTalkerError, match="empty or truncated"):
        load_pickle(empty)
    text = tmp_path / "text.pkl"
    text.write_text("hello, this is text\n")
    with pytest.raises(MMTalkerError, match="text.pkl"):
        load_pickle(text)


def test_missing_and_folder(tmp_path):
    with pytest.raises(MMTalkerError, match="no such file"):
        load_pickle(tmp_path / "nope.pkl")
    with pytest.raises(MMTalkerError, match="folder"):
        load_pickle(tmp_path)
