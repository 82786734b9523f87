"""Reading pickles that users download (FLAME_masks.pkl, dataset index files) without running their code.

A pickle can ask the loader to import and call anything (``os.system``, ``subprocess.Popen``...). The
unpickler here admits only what is needed for numpy arrays and plain containers: the few numpy globals
that rebuild arrays, dtypes and scalars (under both the ``numpy.core`` and the NumPy 2 ``numpy._core``
module names), ``set``/``frozenset``/``complex``/``bytearray``/``OrderedDict``, and ``_codecs.encode``
restricted to latin-1 (how protocol 0-2 pickles written by Python 3 store bytes). Anything else is refused
before it is imported. The admitted callables are wrapped so that a file cannot make them reserve memory
of any size it likes (``ndarray((10**12,))``, ``bytearray(10**12)``); arrays are only as large as their data. Python 2 pickles (FLAME's files) load with ``encoding="latin1"``, as numpy requires.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import os
import pickle
from pathlib import Path

import numpy as np

from mmtalker.errors import MMTalkerError

try:  # NumPy >= 2 keeps these in numpy._core; numpy.core is the old name (and the one in old pickles)
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

ALLOWED_DESCRIPTION = "only numpy arrays and plain containers are allowed"


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """``_codecs.encode`` as protocol 0-2 pickles use it for bytes: latin-1 only."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode is only allowed with latin-1, not {encoding!r}")
    return codecs.encode(text, "latin1", errors)


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` in a pickle: it may only be the subtype handed to ``_reconstruct``,
    never called (``ndarray(shape)`` would reserve memory of any size the file asks for)."""


def _reconstruct(subtype, shape, dtype):
    """numpy's ``_reconstruct`` as numpy pickles use it: an empty ndarray that BUILD then fills."""
    if subtype is not _NdarrayToken:
        raise pickle.UnpicklingError("_reconstruct is only allowed for numpy.ndarray")
    if int(np.prod(shape)) != 0:
        raise pickle.UnpicklingError(f"_reconstruct asks for an array of shape {shape}; numpy pickles ask for (0,)")
    return _multiarray._reconstruct(np.ndarray, shape, dtype)


def _bytearray(source=b"", *args):
    """``bytearray`` from bytes or a string only: ``bytearray(10**12)`` would allocate what the file asks."""
    if not isinstance(source, (bytes, bytearray, str)):
        raise pickle.UnpicklingError(f"bytearray is only allowed from bytes or a string, not {type(source).__name__}")
    return bytearray(source, *args)


def _allowed_globals() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): _NdarrayToken,
        ("numpy", "dtype"): np.dtype,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
        ("builtins", "bytearray"): _bytearray,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("_codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = _multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = _numeric._frombuffer
    return allowed


_ALLOWED = _allowed_globals()


class _RefusedGlobal(Exception):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class _RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` knows only the allowed globals; it imports nothing."""

    def find_class(self, module, name):
        # Python 2 names (__builtin__.set, copy_reg...), mapped as the stock Unpickler does with fix_imports.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        try:
            return _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise _RefusedGlobal(str(module), str(name)) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not supported")


def load_pickle(path: str | os.PathLike):
    """Load a pickle that may hold only numpy arrays, numpy scalars and plain Python containers.

    Args:
        path: a ``.pkl`` file, Python 2 or 3, any protocol.

    Returns:
        The unpickled object (e.g. FLAME_masks.pkl gives a dict of str -> (K,) int arrays).

    Raises:
        MMTalkerError: missing file; the pickle asks for any other global (named in the message; nothing
        is imported or run); or the data is corrupt or truncated.
    """
    path = Path(path)
    if not path.exists():
        raise MMTalkerError(path, "no such file", "check the path")
    if path.is_dir():
        raise MMTalkerError(path, "is a folder, not a pickle file")
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="latin1").load()
    except _RefusedGlobal as exc:
        raise MMTalkerError(
            path,
            f"refusing to load {path.name}: it asks to import {exc.qualname}; {ALLOWED_DESCRIPTION}",
            "if you trust the file, convert it to .npz yourself",
        ) from None
    except EOFError:
        raise MMTalkerError(path, "the pickle is empty or truncated", "download the file again") from None
    except OSError as exc:
        raise MMTalkerError(path, f"cannot read the file ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - corrupt pickles raise almost any type
        raise MMTalkerError(
            path, f"not a readable pickle ({type(exc).__name__}: {str(exc)[:200]})", "the file is corrupt or truncated"
        ) from None
