"""The synthetic voice: a source-filter model driven by the voice parameters at the control rate.

Rosenberg glottal pulses at a time-varying pitch (accent, declination, tremor, slow jitter), a five-vowel formant
filter bank (Klatt resonators, scaled per subject), syllable-rate amplitude modulation with pauses, consonant noise
bursts, aspiration, laughter bouts near the expression apex, over a constant room-noise floor, so that loudness
survives per-clip normalisation as a signal-to-noise ratio.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .labels import random_walk, smoothstep
from .subjects import SyntheticSubject

# Formants (F1, F2, F3 in Hz) and bandwidths of five vowels /a e i o u/ of an adult voice.
_VOWEL_FORMANTS = np.array([[730, 1090, 2440], [530, 1840, 2480], [290, 2250, 2890], [570, 840, 2410],
                            [300, 870, 2240]], dtype=np.float64)  # fmt: skip
_FORMANT_BANDWIDTHS = np.array([80.0, 100.0, 140.0])
_VOWEL_OPENNESS = np.array([1.0, 0.7, 0.35, 0.75, 0.45])  # jaw opening of /a e i o u/, drives the lips


class _VoiceControls(NamedTuple):
    """The voice parameters (``VOICE_PARAMETER_NAMES`` order), each ``[S]`` at the audio sampling rate."""

    pitch: np.ndarray
    pitch_range: np.ndarray
    loudness: np.ndarray
    speech_rate: np.ndarray
    tremor: np.ndarray
    breathiness: np.ndarray
    tension: np.ndarray
    laughter: np.ndarray


class _Syllables(NamedTuple):
    """Per sample ``[S]``: syllable ``index`` and phase ``frac`` in [0, 1), the voiced envelope; per syllable:
    ``vowel`` (index into ``_VOWEL_FORMANTS``), pitch ``accent``, ``pause`` and ``fricative`` flags."""

    index: np.ndarray
    frac: np.ndarray
    voiced_env: np.ndarray
    vowel: np.ndarray
    accent: np.ndarray
    pause: np.ndarray
    fricative: np.ndarray


def _resonator(frequency: float, bandwidth: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Second-order formant resonator with unit gain at 0 Hz (Klatt)."""
    r = math.exp(-math.pi * bandwidth / sample_rate)
    c = -r * r
    b = 2 * r * math.cos(2 * math.pi * frequency / sample_rate)
    return np.array([1.0 - b - c]), np.array([1.0, -b, -c])


def synthesize_voice(
    rng: np.random.Generator,
    subject: SyntheticSubject,
    voice_params: np.ndarray,
    control_rate: float,
    duration: float,
    sample_rate: int,
    apex_time: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source-filter voice.

    Args:
        voice_params: ``[num_control, len(VOICE_PARAMETER_NAMES)]`` at ``control_rate`` Hz.
    Returns:
        waveform ``[S]`` float32 in [-1, 1]; talking ``[S]`` (jaw opening of the current syllable, 0 when
        silent); laughing ``[S]`` (laughter pulse envelope times laughter level).
    """
    from scipy.signal import lfilter

    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    ctrl_t = np.arange(voice_params.shape[0]) / control_rate
    controls = _VoiceControls(*(np.interp(t, ctrl_t, voice_params[:, k]) for k in range(voice_params.shape[1])))
    syllables = _syllables(rng, controls.speech_rate, sample_rate)
    excitation, f0, noise = _glottal_excitation(rng, subject, controls, syllables, t, duration, sample_rate)
    excitation, laughing, bout = _add_laughter(rng, excitation, noise, controls.laughter, f0, t, apex_time,
                                               sample_rate)  # fmt: skip
    vowel_at = np.where(laughing > 0.01, 0, syllables.vowel[syllables.index])
    speech = _formant_filter(excitation, vowel_at, subject.formant_scale, sample_rate)
    index, pause = syllables.index, syllables.pause
    burst = np.exp(-0.5 * ((syllables.frac - 0.05) / 0.025) ** 2) * syllables.fricative[index] * ~pause[index] * (
        1 - bout)  # fmt: skip
    hiss = np.diff(noise, prepend=0.0)
    speech = speech + 0.2 * burst * hiss * (0.6 + 0.6 * controls.tension)

    # calibrated level: loudness in dB over a constant room-noise floor (survives per-clip normalisation as SNR)
    voiced_env = syllables.voiced_env
    reference = np.sqrt(np.mean(speech[voiced_env > 0.3] ** 2)) if (voiced_env > 0.3).any() else 1.0
    speech = speech / max(reference, 1e-8) * 0.08 * 10.0 ** (9.0 * controls.loudness / 20.0)
    room = lfilter([0.05], [1.0, -0.95], rng.standard_normal(n)) * 0.004 / 0.16
    waveform = np.clip(speech + room, -1.0, 1.0).astype(np.float32)
    talking = voiced_env * _VOWEL_OPENNESS[syllables.vowel[index]]
    return waveform, talking.astype(np.float32), laughing.astype(np.float32)


def _syllables(rng: np.random.Generator, speech_rate: np.ndarray, sample_rate: int) -> _Syllables:
    """A rate-modulated syllable clock; each syllable is a consonant burst then a voiced vowel, some are pauses."""
    rate_hz = 4.2 * 2.0 ** (0.55 * speech_rate)
    syllable_clock = np.cumsum(rate_hz) / sample_rate + rng.uniform(0, 1)
    index = np.floor(syllable_clock).astype(np.int64)
    index -= index[0]
    frac = syllable_clock - np.floor(syllable_clock)
    num_syllables = int(index[-1]) + 1
    vowel = rng.integers(0, len(_VOWEL_FORMANTS), num_syllables)
    stress = rng.uniform(0.55, 1.0, num_syllables)
    accent = rng.normal(0, 1, num_syllables)
    pause = rng.random(num_syllables) < 0.12
    pause[:2] = False
    fricative = rng.random(num_syllables) < 0.5
    voiced_env = smoothstep((frac - 0.12) / 0.12) * smoothstep((0.9 - frac) / 0.15)
    voiced_env = voiced_env * stress[index] * ~pause[index]
    return _Syllables(index, frac, voiced_env, vowel, accent, pause, fricative)


def _glottal_excitation(
    rng: np.random.Generator,
    subject: SyntheticSubject,
    controls: _VoiceControls,
    syllables: _Syllables,
    t: np.ndarray,
    duration: float,
    sample_rate: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voiced excitation ``[S]`` (glottal pulses plus aspiration), the pitch ``f0`` ``[S]`` in Hz and the white
    noise ``[S]`` the aspiration used (reused by laughter and consonant bursts)."""
    n = len(t)
    index, frac = syllables.index, syllables.frac
    # pitch contour in semitones above the subject's base pitch
    tremor_phase = 2 * np.pi * 5.5 * t + rng.uniform(0, 2 * np.pi)
    semitones = 4.0 * controls.pitch + (1.0 + 1.5 * (controls.pitch_range + 1.0)) * syllables.accent[index] * np.sin(
        np.pi * frac)  # fmt: skip
    semitones += -1.5 * t / duration + 1.2 * controls.tremor * np.sin(tremor_phase)
    semitones += random_walk(rng, n // 80 + 2, 1, 0.3, 4)[:, 0].repeat(80)[:n]
    f0 = subject.base_pitch_hz * 2.0 ** (semitones / 12.0)
    cycle = np.cumsum(f0) / sample_rate
    p = cycle - np.floor(cycle)
    open_phase, close_phase = 0.4, 0.17 - 0.11 * controls.tension  # a short closing phase = a tense, bright voice
    glottal = np.where(
        p < open_phase,
        0.5 * (1 - np.cos(np.pi * p / open_phase)),
        np.where(p < open_phase + close_phase, np.cos(0.5 * np.pi * np.minimum((p - open_phase) / close_phase, 1)), 0),
    )
    source = np.diff(glottal, prepend=glottal[0]) * (sample_rate / 200.0)
    noise = rng.standard_normal(n)
    amplitude = syllables.voiced_env * (1 + 0.45 * controls.tremor * np.sin(tremor_phase + 0.7))
    excitation = amplitude * (source + (0.08 + 0.9 * controls.breathiness) * noise * (0.4 + 0.6 * glottal))
    return excitation, f0, noise


def _add_laughter(
    rng: np.random.Generator,
    excitation: np.ndarray,
    noise: np.ndarray,
    laughter: np.ndarray,
    f0: np.ndarray,
    t: np.ndarray,
    apex_time: float,
    sample_rate: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bout of breathy /a/ pulses near the apex, replacing speech where it is loud enough.

    Returns the new excitation, ``laughing`` (pulse envelope times laughter level) and the bout window, all ``[S]``.
    """
    level = np.clip((laughter - 0.2) / 0.5, 0, 1)
    bout_start = apex_time + rng.uniform(-0.2, 0.2)
    bout = smoothstep((t - bout_start) / 0.08) * smoothstep((bout_start + 0.4 + 0.6 * level - t) / 0.08)
    laughing = bout * level * np.sin(np.pi * ((t - bout_start) * 4.8 % 1.0)) ** 2
    laugh_cycle = np.cumsum(f0 * 2.0 ** (5 / 12)) / sample_rate
    laugh_p = laugh_cycle - np.floor(laugh_cycle)
    laugh_source = np.diff(0.5 * (1 - np.cos(2 * np.pi * laugh_p)), prepend=0.0) * (sample_rate / 200.0)
    excitation = excitation * (1 - bout * level) + laughing * (laugh_source + 1.2 * noise)
    return excitation, laughing, bout


def _formant_filter(excitation: np.ndarray, vowel_at: np.ndarray, formant_scale: float, sample_rate: int) -> np.ndarray:
    """The formant filter bank: one resonator cascade per vowel, cross-faded over 10 ms where the vowel changes."""
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import lfilter

    speech = np.zeros(len(excitation))
    fade = max(1, int(0.01 * sample_rate))
    for v, formants in enumerate(_VOWEL_FORMANTS):
        selected = vowel_at == v
        if not selected.any():
            continue
        y = excitation
        for frequency, bandwidth in zip(formants * formant_scale, _FORMANT_BANDWIDTHS):
            y = lfilter(*_resonator(min(frequency, 0.45 * sample_rate), bandwidth, sample_rate), y)
        speech += uniform_filter1d(selected.astype(np.float64), fade, mode="nearest") * y
    return speech
