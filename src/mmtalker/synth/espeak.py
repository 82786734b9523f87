"""espeak-ng through its C library (the ``espeakng-loader`` wheel, no system package), with ctypes.

Synthesis is synchronous: the library calls :func:`_collect` with blocks of 16-bit audio and a list
of events. With the initialisation options ``PHONEME_EVENTS | PHONEME_IPA`` a phoneme event (type 7)
carries the phoneme in IPA (up to 8 bytes) and ``sample``, its first sample in the returned audio:
the next phoneme's start is its end, so the timings are exact. A word event (type 1) carries the
word's character position in the text (1-based). An empty phoneme string is a pause.

The library keeps static state between calls (the glottal pulse phase, the pitch flutter index,
its noise generator), so two calls with the same text differ by a few samples. To make synthesis a
pure function of (text, voice), the library is unloaded (``dlclose``) and loaded afresh before each
call, which takes about a millisecond. Its state is process-global: every call is made under
:data:`_LOCK`.
"""

from __future__ import annotations

import ctypes
import re
import threading
from bisect import bisect_right

import numpy as np

from mmtalker.errors import MMTalkerError
from mmtalker.synth.speech import Segment, Voice

AUDIO_OUTPUT_SYNCHRONOUS = 2
INIT_PHONEME_EVENTS = 0x0001
INIT_PHONEME_IPA = 0x0002
INIT_DONT_EXIT = 0x8000
POS_CHARACTER = 1
CHARS_UTF8 = 1
PARAM_RATE, PARAM_PITCH = 1, 3
EVENT_LIST_END, EVENT_WORD, EVENT_PHONEME = 0, 1, 7
NORMAL_WPM = 175
"""espeak-ng's default speaking rate, words per minute: ``Voice.rate = 1``."""

_LOCK = threading.Lock()
_STATE: dict = {}
_BUFFER: dict = {"audio": [], "events": []}


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def _collect(wav, num_samples, events) -> int:
    """The synth callback: copy the audio block and the (type, text position, sample, IPA) of each event."""
    if num_samples > 0:
        _BUFFER["audio"].append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
    i = 0
    while events[i].type != EVENT_LIST_END:
        ev = events[i]
        ipa = ev.id.string.decode("utf-8", "ignore") if ev.type == EVENT_PHONEME else ""
        _BUFFER["events"].append((ev.type, ev.text_position, ev.sample, ipa))
        i += 1
    return 0


def _fresh_library():
    """espeak-ng loaded and initialised from scratch; returns ``(lib, sample_rate)``. Call under :data:`_LOCK`."""
    import _ctypes

    import espeakng_loader

    if _STATE:
        old = _STATE.pop("lib")
        old.espeak_Terminate()  # frees its buffers before the code is unloaded
        _ctypes.dlclose(old._handle)
        _STATE.clear()
    try:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
    except OSError as err:
        raise MMTalkerError(espeakng_loader.get_library_path(), f"cannot load espeak-ng: {err}",
                            "reinstall espeakng-loader") from err
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    options = INIT_PHONEME_EVENTS | INIT_PHONEME_IPA | INIT_DONT_EXIT
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), options)
    if rate <= 0:
        raise MMTalkerError(espeakng_loader.get_library_path(), "espeak-ng failed to initialise",
                            "reinstall espeakng-loader")
    # espeak-ng seeds the noise of its breathy variants (f3, ...) from the clock when it initialises, so
    # the same voice and text gave other samples in every run: a fixed seed makes them the same bytes
    set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
    if set_seed is not None:
        set_seed.argtypes = [ctypes.c_long]
        set_seed(0)
    callback = _CALLBACK(_collect)  # kept referenced in _STATE so it is never garbage-collected
    lib.espeak_SetSynthCallback(callback)
    _STATE.update(lib=lib, sample_rate=rate, callback=callback)
    return _STATE["lib"], _STATE["sample_rate"]


def speak(text: str, voice: Voice) -> tuple[np.ndarray, int, list[Segment]]:
    """Synthesise ``text``; returns audio (N,) float32, the sample rate and the phoneme segments."""
    with _LOCK:
        lib, sample_rate = _fresh_library()
        name = voice.name + (f"+{voice.variant}" if voice.variant else "")
        if lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise MMTalkerError(f"espeak-ng voice {name!r}", "is not known to espeak-ng",
                                "use a voice such as en-us, en-gb-x-rp, with a variant such as m3 or f2")
        lib.espeak_SetParameter(PARAM_RATE, int(round(NORMAL_WPM * voice.rate)), 0)
        lib.espeak_SetParameter(PARAM_PITCH, int(voice.pitch), 0)
        err, blocks, events = _run(lib, text)
    if err != 0 or not blocks:
        raise MMTalkerError(f"espeak-ng voice {name!r}", f"synthesis failed (error {err}) for {text!r}")
    audio = np.concatenate(blocks).astype(np.float32) / 32768.0
    return audio, sample_rate, _segments(events, text, len(audio))


def _run(lib, text: str) -> tuple[int, list[np.ndarray], list[tuple]]:
    """One synchronous synthesis: (error code, int16 audio blocks, events). Call under :data:`_LOCK`."""
    _BUFFER["audio"], _BUFFER["events"] = [], []
    data = text.encode("utf-8")
    err = lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
    lib.espeak_Synchronize()
    blocks, events = _BUFFER["audio"], _BUFFER["events"]
    _BUFFER["audio"], _BUFFER["events"] = [], []
    return err, blocks, events


def _segments(events: list[tuple], text: str, num_samples: int) -> list[Segment]:
    """Phoneme events → segments, each ending where the next phoneme starts (or at the audio's end)."""
    word_of = word_index_fn(text)
    word = -1
    starts: list[tuple[int, str, int]] = []
    for kind, position, sample, ipa in events:
        if kind == EVENT_WORD:
            word = word_of(position)
        elif kind == EVENT_PHONEME:
            starts.append((min(sample, num_samples), ipa, word if ipa else -1))
    segments = []
    for i, (start, ipa, w) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else num_samples
        segments.append(Segment(ipa, start, max(start, end), w))
    return segments


def word_index_fn(text: str):
    """A function: 1-based character position in ``text`` → index of the whitespace-separated word there
    (a position between words gives the previous one)."""
    starts = [m.start() for m in re.finditer(r"\S+", text)]

    def word_of(position: int) -> int:
        return max(0, bisect_right(starts, position - 1) - 1)

    return word_of


def word_starts(text: str, voice_name: str = "en-us") -> list[int]:
    """The text word index at which each spoken word group begins (engines run some words together:
    "on the" is one group). Used to give Piper's phones their word index."""
    with _LOCK:
        lib, _ = _fresh_library()
        lib.espeak_SetVoiceByName(voice_name.encode())
        _, _, events = _run(lib, text)
    word_of = word_index_fn(text)
    return [word_of(pos) for kind, pos, _, _ in events if kind == EVENT_WORD]
