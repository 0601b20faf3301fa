"""Synthetic subjects: one person's appearance and voice (skin, hair, face shape, clothing, background, pitch,
formants, neutral expression, expressiveness), drawn from a generator. Train, validation and test draw disjoint
subject pools."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .labels import FACE_PARAMETER_NAMES, VOICE_PARAMETER_NAMES

_SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 167], [224, 172, 138], [198, 134, 99], [161, 102, 72], [120, 74, 52], [92, 58, 42]],
    dtype=np.float64,
)
_HAIR_COLOURS = np.array(
    [[28, 24, 22], [55, 38, 28], [96, 66, 42], [186, 150, 100], [118, 56, 34], [150, 148, 146]], dtype=np.float64
)
_IRIS_COLOURS = np.array([[70, 45, 25], [45, 30, 20], [60, 100, 140], [85, 110, 70], [110, 80, 45]], dtype=np.float64)


@dataclass(frozen=True)
class SyntheticSubject:
    """Appearance and voice of one synthetic person (all plain numbers, so it serialises to JSON)."""

    subject_id: int
    skin_rgb: tuple[float, float, float]
    hair_rgb: tuple[float, float, float]
    lip_rgb: tuple[float, float, float]
    iris_rgb: tuple[float, float, float]
    clothing_rgb: tuple[float, float, float]
    background_rgb: tuple[float, float, float]
    hair_style: int  # 0 short, 1 long, 2 receding / very short
    face_scale: float  # face half-height as a fraction of the frame height
    face_aspect: float  # half-width / half-height
    face_offset: tuple[float, float]  # centre offset as fractions of width and height
    jaw_taper: float
    eye_spacing: float
    eye_size: float
    mouth_width: float
    brow_thickness: float
    expressiveness: float
    neutral_face: tuple[float, ...]
    neutral_voice: tuple[float, ...]
    base_pitch_hz: float
    formant_scale: float
    background_seed: int


def sample_subject(rng: np.random.Generator, subject_id: int = 0) -> SyntheticSubject:
    """Draw one subject's appearance and voice."""
    pos = rng.uniform(0, len(_SKIN_TONES) - 1)
    lo = int(pos)
    skin = _SKIN_TONES[lo] * (1 - (pos - lo)) + _SKIN_TONES[min(lo + 1, len(_SKIN_TONES) - 1)] * (pos - lo)
    skin = np.clip(skin + rng.normal(0, 5, 3), 0, 255)
    hair = np.clip(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] + rng.normal(0, 6, 3), 0, 255)
    lip = np.clip(skin * np.array([0.78, 0.48, 0.48]) + np.array([30, 0, 5]) + rng.normal(0, 5, 3), 0, 255)
    iris = np.clip(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] + rng.normal(0, 6, 3), 0, 255)
    clothing = np.clip(rng.uniform(40, 200) + rng.normal(0, 35, 3), 15, 240)
    grey = rng.uniform(80, 200)
    background = np.clip(grey + rng.normal(0, 18, 3), 40, 230)  # muted, room-like colours
    female = rng.random() < 0.5
    base_pitch = rng.uniform(175, 245) if female else rng.uniform(95, 145)
    return SyntheticSubject(
        subject_id=int(subject_id),
        skin_rgb=tuple(float(x) for x in skin),
        hair_rgb=tuple(float(x) for x in hair),
        lip_rgb=tuple(float(x) for x in lip),
        iris_rgb=tuple(float(x) for x in iris),
        clothing_rgb=tuple(float(x) for x in clothing),
        background_rgb=tuple(float(x) for x in background),
        hair_style=int(rng.choice(3, p=[0.45, 0.4, 0.15]) if female else rng.choice(3, p=[0.6, 0.1, 0.3])),
        face_scale=float(rng.uniform(0.27, 0.33)),
        face_aspect=float(rng.uniform(0.72, 0.84)),
        face_offset=(float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.03, 0.03))),
        jaw_taper=float(rng.uniform(0.15, 0.4)),
        eye_spacing=float(rng.uniform(0.33, 0.4)),
        eye_size=float(rng.uniform(0.9, 1.12)),
        mouth_width=float(rng.uniform(0.32, 0.4)),
        brow_thickness=float(rng.uniform(0.8, 1.3)),
        expressiveness=float(rng.uniform(0.75, 1.25)),
        neutral_face=tuple(float(x) for x in rng.normal(0, 0.08, len(FACE_PARAMETER_NAMES))),
        neutral_voice=tuple(float(x) for x in rng.normal(0, 0.12, len(VOICE_PARAMETER_NAMES))),
        base_pitch_hz=float(base_pitch),
        formant_scale=float(rng.uniform(1.05, 1.18) if female else rng.uniform(0.92, 1.02)),
        background_seed=int(rng.integers(2**31)),
    )
