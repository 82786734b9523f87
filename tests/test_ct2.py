"""CTranslate2 model.bin reader: round trips of every dtype, aliases, corrupt files, and the real Whisper file."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from mmtalker.audio.ct2 import load_ct2, read_ct2_index, write_ct2
from mmtalker.errors import MMTalkerError


def _variables() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "encoder/w32": rng.standard_normal((3, 4)).astype(np.float32),
        "encoder/w16": rng.standard_normal((2, 5)).astype(np.float16),
        "encoder/wbf16": rng.standard_normal((7,)).astype(np.float32),
        "encoder/i8": np.arange(-3, 3, dtype=np.int8).reshape(2, 3),
        "encoder/i16": np.array(6, dtype=np.int16),  # a scalar (rank 0)
        "decoder/i32": np.arange(24, dtype=np.int32).reshape(2, 3, 4),
    }


@pytest.fixture()
def small_bin(tmp_path):
    path = tmp_path / "model.bin"
    aliases = {"encoder/alias": "decoder/i32"}
    write_ct2(path, _variables(), spec="TestSpec", revision=3, aliases=aliases, bfloat16=("encoder/wbf16",))
    return path


def test_index_reads_header(small_bin):
    index = read_ct2_index(small_bin)
    assert (index.version, index.spec, index.revision) == (6, "TestSpec", 3)
    assert list(index.variables) == list(_variables())
    assert index.variables["encoder/wbf16"].dtype_name == "bfloat16"
    assert index.variables["decoder/i32"].shape == (2, 3, 4)
    assert index.aliases == {"encoder/alias": "decoder/i32"}


def test_round_trip_all_dtypes(small_bin):
    ref = _variables()
    got = load_ct2(small_bin, float32=False)
    assert set(got) == set(ref) | {"encoder/alias"}
    for name in ("encoder/w32", "encoder/w16", "encoder/i8", "encoder/i16", "decoder/i32"):
        assert got[name].dtype == ref[name].dtype and got[name].shape == ref[name].shape, name
        np.testing.assert_array_equal(got[name], ref[name])
    np.testing.assert_array_equal(got["encoder/alias"], ref["decoder/i32"])
    # bfloat16 keeps 7 stored mantissa bits: round-to-nearest errs by at most 2^-8 relative,
    # and must agree with torch's own float32 -> bfloat16 conversion bit for bit
    bf = got["encoder/wbf16"]
    assert bf.dtype == np.float32
    assert np.all(np.abs(bf - ref["encoder/wbf16"]) <= np.abs(ref["encoder/wbf16"]) * 2.0**-8)
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(bf, torch.from_numpy(ref["encoder/wbf16"]).bfloat16().float().numpy())


def test_bfloat16_hand_values(tmp_path):
    path = tmp_path / "bf.bin"
    values = np.array([1.0, -2.5, 0.0, 3.140625, 65536.0], dtype=np.float32)  # all exact in bfloat16
    write_ct2(path, {"x": values}, bfloat16=("x",))
    raw = path.read_bytes()
    assert struct.pack("<HHHHH", 0x3F80, 0xC020, 0x0000, 0x4049, 0x4780) in raw  # upper 16 bits of each float32
    np.testing.assert_array_equal(load_ct2(path)["x"], values)


def test_prefix_filter_and_float32(small_bin):
    got = load_ct2(small_bin, "encoder/")
    assert set(got) == {"encoder/w32", "encoder/w16", "encoder/wbf16", "encoder/i8", "encoder/i16", "encoder/alias"}
    assert got["encoder/w16"].dtype == np.float32  # widened by default
    assert got["encoder/i8"].dtype == np.int8  # integers untouched
    with pytest.raises(MMTalkerError, match="no variables starting with 'nothing/'"):
        load_ct2(small_bin, "nothing/")


def test_truncated_file_names_the_file(small_bin):
    data = small_bin.read_bytes()
    for cut in (2, 20, len(data) // 2, len(data) - 3):
        small_bin.write_bytes(data[:cut])
        with pytest.raises(MMTalkerError, match="model.bin: ends early"):
            read_ct2_index(small_bin)


def test_corrupt_and_wrong_files(tmp_path, small_bin):
    with pytest.raises(MMTalkerError, match="no such file"):
        read_ct2_index(tmp_path / "missing.bin")
    bogus = tmp_path / "bogus.bin"
    bogus.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    with pytest.raises(MMTalkerError, match="bogus.bin: unsupported CTranslate2 format version"):
        read_ct2_index(bogus)
    data = bytearray(small_bin.read_bytes())
    pos = data.index(b"encoder/w32\0") + len(b"encoder/w32\0") + 1 + 8  # past rank and two dims: the dtype id
    data[pos] = 9
    small_bin.write_bytes(bytes(data))
    with pytest.raises(MMTalkerError, match="unknown dtype id 9"):
        read_ct2_index(small_bin)
    write_ct2(tmp_path / "other.bin", {"x": np.zeros(2, np.float32)}, spec="TransformerSpec")
    with pytest.raises(MMTalkerError, match="other.bin: holds a TransformerSpec model, not WhisperSpec"):
        load_ct2(tmp_path / "other.bin", spec="WhisperSpec")


def test_write_refuses_to_overwrite(small_bin):
    with pytest.raises(MMTalkerError, match="already exists"):
        write_ct2(small_bin, {"x": np.zeros(1, np.float32)})
    write_ct2(small_bin, {"x": np.zeros(1, np.float32)}, overwrite=True)
    assert list(load_ct2(small_bin)) == ["x"]


def test_real_whisper_file():
    from mmtalker.audio.whisper import default_model_path

    index = read_ct2_index(default_model_path())
    assert index.spec == "WhisperSpec" and index.version >= 2
    assert index.variables["encoder/conv1/weight"].dtype_name == "float16"
    enc = load_ct2(default_model_path(), "encoder/", spec="WhisperSpec")
    assert all(name.startswith("encoder/") for name in enc)
    assert enc["encoder/conv1/weight"].shape == (384, 80, 3) and enc["encoder/conv1/weight"].dtype == np.float32
    assert enc["encoder/position_encodings/encodings"].shape == (1500, 384)
    assert int(enc["encoder/num_heads"]) == 6
    assert sum(name.endswith("self_attention/linear_0/weight") for name in enc) == 4
    qkv_bias = enc["encoder/layer_0/self_attention/linear_0/bias"]
    assert qkv_bias.shape == (3 * 384,) and not qkv_bias[384:768].any()  # Whisper's k projection has no bias
    # the sinusoidal table: row 0 is sin(0)=0 for the first half, cos(0)=1 for the second
    np.testing.assert_allclose(enc["encoder/position_encodings/encodings"][0], np.r_[np.zeros(192), np.ones(192)], atol=1e-3)
