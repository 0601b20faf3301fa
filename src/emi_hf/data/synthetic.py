"""Synthetic audiovisual EMI data in the Hume-Vidmimic2 layout.

Real Emotional Mimicry Intensity data (Hume-Vidmimic2) cannot ship with the package, so this module generates a
stand-in that exercises the whole pipeline (decoding, face detection and alignment, AU extraction, audio features,
the temporal models, fusion and the mean-Pearson metric) and that a model can actually learn from:

- **Layout**: exactly the layout read by [`emi_hf.data.layout.load_hume_vidmimic2`]::

      output_dir/
        videos/00000.mp4 00001.mp4 ...     H.264 (yuv420p) video + AAC mono audio, one clip per id
        train_split.csv                      Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy
        valid_split.csv                      same header
        test_split.csv                       Filename only (written when num_test > 0)
        synthetic_metadata.json              seed, generator version, mapping matrices, subjects, per-clip info

  Ids run over train, then validation, then test clips. The ``Filename`` column holds the 5-digit id without
  extension, as in the real CSV files.

- **Video**: a drawn, shaded, animated face (skin ellipse with lighting, hair, ears, neck and shoulders, brows,
  eyes with whites, irises, pupils and lids, nose shadows and nostrils, lips, inner mouth and teeth) on a textured
  per-subject background, drawn with OpenCV (anti-aliased, sub-pixel) and moved by a similarity warp (head roll,
  nod, sway and small yaw), with blinks and gaze shifts. Default 256x256 at 25 fps. Measured with generator 1.0.0
  on 500 frames of 100 subjects (256x256; also 30 subjects each at 128x128 and 320x240): facenet-pytorch MTCNN
  (probability >= 0.9, IoU > 0.4 with the drawn face) 100 %, MediaPipe face detection (short- and full-range
  models) 100 %, MediaPipe face mesh 100 %, no false detections in the backgrounds. ``tests/test_synthetic.py``
  checks this on 16 frames.
- **Audio**: a source-filter synthetic voice: Rosenberg glottal pulses at a time-varying pitch, five-vowel formant
  filter bank, syllable-rate amplitude modulation with pauses, consonant noise bursts, aspiration, tremor, laughter
  bouts, over a constant room-noise floor (so that loudness survives per-clip normalisation as a signal-to-noise
  ratio). The lips move with the syllable envelope, so the two streams are in sync. AAC at 24 kHz by default
  (``sample_rate``), so readers exercise their resampling to 16 kHz.

**Labels.** Six intensities in [0, 1] per clip, in the order of ``EMOTION_NAMES``. They come from a Gaussian
copula (correlation matrix ``LABEL_CORRELATION``: Joy-Amusement 0.6, Joy-Admiration 0.35, Joy-Excitement 0.35,
Empathic Pain negatively correlated with Joy and Amusement, ...) with Beta(1.3, 2.2) marginals (mean ~0.37).

**Mapping.** Per clip, with ``y`` the label vector::

    face(t)  = clip(neutral_face[subject]  + expressiveness[subject] * envelope(t) * (FACE_MAPPING  @ y) + noise(t))
    voice(t) = clip(neutral_voice[subject] + expressiveness[subject] * envelope(t) * (VOICE_MAPPING @ y) + noise(t))

``envelope(t)`` is a smooth onset (at 10-35 % of the clip, 0.25-0.6 s rise) to an apex, then a partial offset in
some clips, so the expression changes within the clip and temporal models have something to use. The noise is a
slow random walk per parameter plus a per-clip offset. Rows of the matrices are the expression parameters
(``FACE_PARAMETER_NAMES``, ``VOICE_PARAMETER_NAMES``), columns the emotions:

================  =====  =====  =====  =====  =====  =====
face parameter     Adm    Amu    Det    EmP    Exc    Joy
================  =====  =====  =====  =====  =====  =====
smile (AU12)       .30    .45    .      -.10   .10    .75
mouth_open (AU26)  .10    .55    .      .      .10    .15
brow_raise (AU1+2) .70    .05    -.05   .      .10    .05
brow_inner_up      .      .      .      .20    .      .
brow_lower (AU4)   .      .      .20    .05    .      .
eye_open (AU5/7)   .55    -.20   -.10   -.05   .15    -.15
cheek_raise (AU6)  .10    .40    .      .      .      .60
lip_corner_down    .      .      .10    .15    .      -.10
head_motion        .      .25    .05    .      .20    .10
================  =====  =====  =====  =====  =====  =====

================  =====  =====  =====  =====  =====  =====
voice parameter    Adm    Amu    Det    EmP    Exc    Joy
================  =====  =====  =====  =====  =====  =====
pitch              .10    .20    -.10   -.45   .80    .15
pitch_range        .15    .20    .      -.30   .75    .10
loudness           .      .10    .80    -.45   .55    .05
speech_rate        -.15   .10    .35    -.60   .75    .05
tremor             .      .      .10    .90    .      .
breathiness        .35    .10    -.30   .55    .      .
tension            .      .      .85    .      .30    .
laughter           .      .50    .      .      .10    .15
================  =====  =====  =====  =====  =====  =====

So Joy, Amusement and Admiration show mostly in the face, Excitement, Determination and Empathic Pain mostly in
the voice (column-norm shares in ``modality_shares()``), with partial overlap: neither modality alone explains
all six, and fusion helps. As a guide (generator 1.0.0, 160 clips, 5-fold ridge regression on the *drawn*
parameters averaged over the second half of each clip, Pearson r per emotion Adm/Amu/Det/EmP/Exc/Joy): face
parameters .84/.85/.36/.55/.46/.90, voice parameters .49/.76/.86/.84/.80/.69, both .84/.86/.86/.86/.82/.89. Models
see pixels and waveforms, not these parameters, so their scores are lower.

**Subjects.** Each clip has a subject (skin tone, face size and shape, eye spacing, hair style and colour, clothing,
background, base pitch, formant scale, neutral expression and voice offsets, expressiveness). Train, validation
and test use disjoint subject pools, as in a subject-independent split.

**Usage**::

    from emi_hf.data.synthetic import generate_synthetic_dataset, render_clip
    generate_synthetic_dataset("synthetic", num_train=160, num_valid=80, seed=0, num_workers=2)
    clip = render_clip([0.2, 0.8, 0.1, 0.0, 0.3, 0.9], seed=1)   # frames [50, 256, 256, 3], waveform [48000]

or ``emi-hf synth synthetic --num-train 160 --num-valid 80``. Rendering plus encoding costs about 0.12 s of CPU
per 2 s clip at 256x256 (about 8 clips/s per core; worker processes add a few seconds of start-up each).

**Determinism.** Everything derives from ``seed`` through ``numpy.random.SeedSequence``: labels and subjects from
``(seed, 0)``, clip ``i`` from ``(seed, 1, i)``, so the result does not depend on ``num_workers``. Rendered frames
and waveforms are bit-identical for a given seed on the same platform; the encoded files are too in practice
(single-threaded x264, no timestamps in the container), though that also depends on the FFmpeg build.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..configuration_emi import EMOTION_NAMES

GENERATOR_VERSION = "1.0.0"

FACE_PARAMETER_NAMES = (
    "smile", "mouth_open", "brow_raise", "brow_inner_up", "brow_lower", "eye_open", "cheek_raise",
    "lip_corner_down", "head_motion",
)  # fmt: skip
VOICE_PARAMETER_NAMES = (
    "pitch", "pitch_range", "loudness", "speech_rate", "tremor", "breathiness", "tension", "laughter",
)  # fmt: skip

# Columns follow EMOTION_NAMES: Admiration, Amusement, Determination, Empathic Pain, Excitement, Joy.
FACE_MAPPING = np.array(
    [
        [0.30, 0.45, 0.00, -0.10, 0.10, 0.75],  # smile
        [0.10, 0.55, 0.00, 0.00, 0.10, 0.15],  # mouth_open
        [0.70, 0.05, -0.05, 0.00, 0.10, 0.05],  # brow_raise
        [0.00, 0.00, 0.00, 0.20, 0.00, 0.00],  # brow_inner_up
        [0.00, 0.00, 0.20, 0.05, 0.00, 0.00],  # brow_lower
        [0.55, -0.20, -0.10, -0.05, 0.15, -0.15],  # eye_open
        [0.10, 0.40, 0.00, 0.00, 0.00, 0.60],  # cheek_raise
        [0.00, 0.00, 0.10, 0.15, 0.00, -0.10],  # lip_corner_down
        [0.00, 0.25, 0.05, 0.00, 0.20, 0.10],  # head_motion
    ]
)
VOICE_MAPPING = np.array(
    [
        [0.10, 0.20, -0.10, -0.45, 0.80, 0.15],  # pitch
        [0.15, 0.20, 0.00, -0.30, 0.75, 0.10],  # pitch_range
        [0.00, 0.10, 0.80, -0.45, 0.55, 0.05],  # loudness
        [-0.15, 0.10, 0.35, -0.60, 0.75, 0.05],  # speech_rate
        [0.00, 0.00, 0.10, 0.90, 0.00, 0.00],  # tremor
        [0.35, 0.10, -0.30, 0.55, 0.00, 0.00],  # breathiness
        [0.00, 0.00, 0.85, 0.00, 0.30, 0.00],  # tension
        [0.00, 0.50, 0.00, 0.00, 0.10, 0.15],  # laughter
    ]
)
# Allowed range of each expression parameter (the renderer clips to it).
_FACE_RANGE = np.array([[-0.6, 1.2], [0.0, 1.0], [-0.5, 1.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 1.0], [0.0, 1.0],
                        [0.0, 1.0], [0.0, 1.0]])  # fmt: skip
_VOICE_RANGE = np.array([[-1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0],
                         [0.0, 1.0]])  # fmt: skip

LABEL_CORRELATION = np.array(
    [
        # Adm   Amu    Det    EmP    Exc    Joy
        [1.00, 0.20, 0.10, 0.05, 0.20, 0.35],
        [0.20, 1.00, -0.05, -0.25, 0.30, 0.60],
        [0.10, -0.05, 1.00, 0.05, 0.25, 0.00],
        [0.05, -0.25, 0.05, 1.00, -0.10, -0.30],
        [0.20, 0.30, 0.25, -0.10, 1.00, 0.35],
        [0.35, 0.60, 0.00, -0.30, 0.35, 1.00],
    ]
)
LABEL_BETA = (1.3, 2.2)

HUME_HEADER = ("Filename",) + tuple(EMOTION_NAMES)
SPLIT_FILES = {"train": "train_split.csv", "validation": "valid_split.csv", "test": "test_split.csv"}

_SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 167], [224, 172, 138], [198, 134, 99], [161, 102, 72], [120, 74, 52], [92, 58, 42]],
    dtype=np.float64,
)
_HAIR_COLOURS = np.array(
    [[28, 24, 22], [55, 38, 28], [96, 66, 42], [186, 150, 100], [118, 56, 34], [150, 148, 146]], dtype=np.float64
)
_IRIS_COLOURS = np.array([[70, 45, 25], [45, 30, 20], [60, 100, 140], [85, 110, 70], [110, 80, 45]], dtype=np.float64)
# Formants (F1, F2, F3 in Hz) and bandwidths of five vowels /a e i o u/ of an adult voice.
_VOWEL_FORMANTS = np.array([[730, 1090, 2440], [530, 1840, 2480], [290, 2250, 2890], [570, 840, 2410],
                            [300, 870, 2240]], dtype=np.float64)  # fmt: skip
_FORMANT_BANDWIDTHS = np.array([80.0, 100.0, 140.0])


def modality_shares() -> dict[str, float]:
    """Share of each emotion's expression carried by the face: ``|F[:, j]| / (|F[:, j]| + |V[:, j]|)``."""
    face = np.linalg.norm(FACE_MAPPING, axis=0)
    voice = np.linalg.norm(VOICE_MAPPING, axis=0)
    return {name: float(f / (f + v)) for name, f, v in zip(EMOTION_NAMES, face, voice)}


# ----------------------------------------------------------------------------------------------------- sampling


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


def sample_labels(rng: np.random.Generator, num_clips: int) -> np.ndarray:
    """Correlated intensities ``[num_clips, 6]`` in [0, 1] (Gaussian copula, Beta marginals)."""
    from scipy.stats import beta, norm

    chol = np.linalg.cholesky(LABEL_CORRELATION)
    z = rng.standard_normal((num_clips, len(EMOTION_NAMES))) @ chol.T
    labels = beta.ppf(norm.cdf(z), *LABEL_BETA)
    return np.clip(np.round(labels, 4), 0.0, 1.0).astype(np.float64)


# ---------------------------------------------------------------------------------------------- expression


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _expression_envelope(rng: np.random.Generator, times: np.ndarray, duration: float) -> np.ndarray:
    """Neutral, onset, apex and (in some clips) a partial offset: values in [0, 1] at ``times`` (seconds)."""
    onset = rng.uniform(0.1, 0.35) * duration
    rise = rng.uniform(0.25, 0.6)
    envelope = _smoothstep((times - onset) / rise)
    if rng.random() < 0.5:
        offset = rng.uniform(0.7, 0.9) * duration
        envelope = envelope * (1 - rng.uniform(0.2, 0.5) * _smoothstep((times - offset) / 0.4))
    return envelope


def _random_walk(rng: np.random.Generator, num_steps: int, num_params: int, scale: float, smooth: int) -> np.ndarray:
    steps = rng.normal(0, 1, (num_steps + 2 * smooth, num_params))
    kernel = np.hanning(2 * smooth + 1)
    kernel /= np.sqrt((kernel**2).sum())
    walk = np.stack([np.convolve(steps[:, k], kernel, mode="valid")[:num_steps] for k in range(num_params)], 1)
    return scale * walk


# ---------------------------------------------------------------------------------------------- rendering

_SHIFT = 4  # OpenCV fixed-point sub-pixel bits
_SCALE = float(1 << _SHIFT)
_BROW_T = np.linspace(0, 1, 9)  # inner -> outer end of a brow
_EYE_T = np.linspace(-1, 1, 15)  # eye corner to corner
_MOUTH_S = np.linspace(-1, 1, 21)  # mouth corner to corner
_FOLD_T = np.linspace(0, 1, 8)
_FOREHEAD_U = np.linspace(-0.3, 0.3, 9)


def _fixed(x, y):
    """Fixed-point pixel coordinates for OpenCV drawing with ``shift=_SHIFT``: a tuple for a point, else [N, 2]."""
    if np.ndim(x) == 0 and np.ndim(y) == 0:
        return int(round(float(x) * _SCALE)), int(round(float(y) * _SCALE))
    points = np.empty(np.broadcast(x, y).shape + (2,), np.float64)
    points[..., 0], points[..., 1] = x, y
    return np.rint(points * _SCALE).astype(np.int32)


def _rgb(c) -> tuple[int, int, int]:
    return tuple(int(round(float(v))) for v in np.clip(c, 0, 255))


def _gauss(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * (u * u + v * v))


class _FaceRenderer:
    """Draws one subject: a static background and head base once, then the moving features frame by frame."""

    def __init__(self, subject: SyntheticSubject, width: int, height: int):
        import cv2

        self.cv2 = cv2
        self.subject = subject
        self.width, self.height = width, height
        self.b = subject.face_scale * height
        self.a = self.b * subject.face_aspect
        self.cx = width / 2 + subject.face_offset[0] * width
        self.cy = height * 0.47 + subject.face_offset[1] * height
        self.skin = np.array(subject.skin_rgb)
        self.hair = np.array(subject.hair_rgb)
        self.lip = np.array(subject.lip_rgb)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        self.uu = (xs - self.cx) / self.a
        self.vv = (ys - self.cy) / self.b
        self.background = self._draw_background()
        self.base, self.alpha = self._draw_head_base()
        ys, xs = np.nonzero(self.alpha > 0)
        x0, x1, y0, y1 = xs.min() - 1.0, xs.max() + 2.0, ys.min() - 1.0, ys.max() + 2.0
        self.head_corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]])
        skin, lip, iris = self.skin, self.lip, np.array(subject.iris_rgb)
        self.colours = {
            "brow": _rgb(self.hair * 0.75), "lower_lid": _rgb(skin * 0.6), "crease": _rgb(skin * 0.68),
            "ala": _rgb(skin * 0.62), "nostril": _rgb(skin * 0.35), "nose_tip": _rgb(np.minimum(skin * 1.12 + 8, 255)),
            "lip": _rgb(lip), "lip_shine": _rgb(np.minimum(lip * 1.2 + 10, 255)), "lip_line": _rgb(lip * 0.45),
            "iris": _rgb(iris), "iris_ring": _rgb(iris * 0.5),
        }  # fmt: skip

    # coordinates: u in [-1, 1] across the face width, v in [-1, 1] from the top of the head to the chin
    def _xy(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        return self.cx + np.asarray(u) * self.a, self.cy + np.asarray(v) * self.b

    def _poly(self, u, v) -> np.ndarray:
        return _fixed(*self._xy(u, v))

    def _draw_background(self) -> np.ndarray:
        cv2, W, H = self.cv2, self.width, self.height
        rng = np.random.default_rng(self.subject.background_seed)
        base = np.array(self.subject.background_rgb, np.float32)
        coarse = rng.uniform(-1, 1, (4, 4, 1)) + 0.35 * rng.uniform(-1, 1, (4, 4, 3))  # mostly brightness
        low = cv2.resize(coarse.astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
        grain = cv2.resize(rng.normal(0, 1, (H // 4, W // 4, 3)).astype(np.float32), (W, H),
                           interpolation=cv2.INTER_LINEAR)  # fmt: skip
        img = base + 28 * low + 6 * grain
        img *= (1.08 - 0.25 * np.linspace(0, 1, H, dtype=np.float32))[:, None, None]
        img = np.clip(img, 0, 255).astype(np.uint8)
        for _ in range(int(rng.integers(2, 5))):  # furniture, frames, shelves: soft-edged rectangles
            x0, y0 = int(rng.integers(0, W)), int(rng.integers(0, H // 2))
            w, h = int(rng.integers(W // 10, W // 2)), int(rng.integers(H // 12, H // 2))
            colour = _rgb(base * rng.uniform(0.6, 1.3) + rng.normal(0, 15, 3))
            cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), colour, -1, cv2.LINE_AA)
        img = cv2.GaussianBlur(img, (0, 0), 1.2)
        # neck and shoulders (static: the head layer moves over them)
        a, b, cx, cy = self.a, self.b, self.cx, self.cy
        clothing = np.array(self.subject.clothing_rgb)
        cv2.ellipse(img, _fixed(cx, cy + 1.85 * b), _fixed(2.15 * a, 0.85 * b), 0, 180, 360, _rgb(clothing), -1,
                    cv2.LINE_AA, _SHIFT)  # fmt: skip
        cv2.rectangle(img, (0, int(cy + 1.85 * b)), (W, H), _rgb(clothing), -1)
        cv2.ellipse(img, _fixed(cx, cy + 1.9 * b), _fixed(1.4 * a, 0.55 * b), 0, 180, 360, _rgb(clothing * 0.8), -1,
                    cv2.LINE_AA, _SHIFT)  # fmt: skip
        neck = np.array([[-0.5, 0.3], [0.5, 0.3], [0.56, 1.3], [0.0, 1.45], [-0.56, 1.3]])
        cv2.fillPoly(img, [self._poly(neck[:, 0], neck[:, 1])], _rgb(self.skin * 0.78), cv2.LINE_AA, _SHIFT)
        cv2.ellipse(img, _fixed(cx, cy + 1.22 * b), _fixed(0.5 * a, 0.12 * b), 0, 0, 180, _rgb(self.skin * 0.7), -1,
                    cv2.LINE_AA, _SHIFT)  # fmt: skip
        return img

    def _face_outline(self, n: int = 72) -> tuple[np.ndarray, np.ndarray]:
        theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
        u, v = np.sin(theta), -np.cos(theta)
        u = u * (1 - self.subject.jaw_taper * np.clip(v, 0, 1) ** 2)
        return u, v

    def _draw_head_base(self) -> tuple[np.ndarray, np.ndarray]:
        """Head without the moving features: hair, ears, shaded skin, eye sockets, cheek and nose shading."""
        cv2, W, H = self.cv2, self.width, self.height
        s = self.subject
        uu, vv = self.uu, self.vv
        rng = np.random.default_rng(s.background_seed + 1)
        img = np.zeros((H, W, 3), np.uint8)
        mask = np.zeros((H, W), np.uint8)
        hair_tex = cv2.resize(rng.normal(0, 1, (max(H // 16, 2), W)).astype(np.float32), (W, H),
                              interpolation=cv2.INTER_LINEAR)  # fmt: skip
        hair_shade = np.clip(1 + 0.15 * hair_tex - 0.25 * np.clip(vv + 0.2, 0, 2) + 0.25 * _gauss(
            (uu + 0.35) / 0.3, (vv + 0.85) / 0.15), 0.4, 1.6)  # fmt: skip
        hair_img = np.clip(self.hair[None, None, :] * hair_shade[..., None] + 10 * hair_tex[..., None], 0, 255)

        back = np.zeros((H, W), np.uint8)  # long hair behind the head
        if s.hair_style == 1:
            cv2.ellipse(back, _fixed(self.cx, self.cy + 0.05 * self.b), _fixed(1.25 * self.a, 1.12 * self.b), 0, 0,
                        360, 255, -1, cv2.LINE_AA, _SHIFT)  # fmt: skip
            cv2.fillPoly(back, [self._poly([-1.25, 1.25, 1.15, -1.15], [0.0, 0.0, 1.05, 1.05])], 255, cv2.LINE_AA,
                         _SHIFT)  # fmt: skip
        ears = np.zeros((H, W), np.uint8)
        for side in (-1, 1):
            cv2.ellipse(ears, _fixed(*self._xy(side * 0.97, 0.02)), _fixed(0.15 * self.a, 0.22 * self.b), 0, 0, 360,
                        255, -1, cv2.LINE_AA, _SHIFT)  # fmt: skip
        face = np.zeros((H, W), np.uint8)
        cv2.fillPoly(face, [self._poly(*self._face_outline())], 255, cv2.LINE_AA, _SHIFT)
        cap = np.zeros((H, W), np.uint8)
        grow = 1.07 if s.hair_style != 2 else 1.02
        cv2.ellipse(cap, _fixed(self.cx, self.cy - 0.02 * self.b), _fixed(grow * self.a, (grow + 0.03) * self.b),
                    0, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)  # fmt: skip
        hairline = {0: -0.55, 1: -0.5, 2: -0.72}[s.hair_style] + 0.28 * uu**2 + 0.04 * np.sin(7 * uu)
        cap = (cap.astype(np.float32) * np.clip((hairline - vv) * self.b / 1.5 + 0.5, 0, 1)).astype(np.uint8)

        # skin shading: light from the upper left, darker towards the outline, eye sockets, cheekbones, nose
        r2 = uu**2 + vv**2
        shade = 1.07 - 0.3 * r2**1.5 - 0.08 * uu - 0.05 * vv
        ex, ey = s.eye_spacing, -0.12
        shade -= 0.1 * (_gauss((uu - ex) / 0.2, (vv - ey) / 0.11) + _gauss((uu + ex) / 0.2, (vv - ey) / 0.11))
        shade -= 0.1 * _gauss((uu - 0.1) / 0.05, (vv - 0.1) / 0.17)  # shadow side of the nose
        shade -= 0.06 * (_gauss((uu - 0.55) / 0.12, (vv - 0.32) / 0.18) + _gauss((uu + 0.55) / 0.12, (vv - 0.32) / 0.18))
        shade += 0.06 * _gauss(uu / 0.25, (vv + 0.55) / 0.15) + 0.05 * _gauss((uu + 0.02) / 0.04, (vv - 0.22) / 0.08)
        shade -= 0.1 * _gauss(uu / 0.12, (vv - 0.74) / 0.05)  # under the lower lip
        shade = np.clip(shade, 0.45, 1.2)
        skin_img = self.skin[None, None, :] * shade[..., None]
        blush = 0.07 * (_gauss((uu - 0.45) / 0.16, (vv - 0.2) / 0.12) + _gauss((uu + 0.45) / 0.16, (vv - 0.2) / 0.12))
        skin_img += blush[..., None] * (np.array([200.0, 60.0, 60.0]) - self.skin)[None, None, :]
        ear_img = self.skin[None, None, :] * (0.82 - 0.2 * _gauss((np.abs(uu) - 0.99) / 0.05, vv / 0.1))[..., None]

        def over(dst: np.ndarray, src: np.ndarray, m: np.ndarray) -> np.ndarray:
            w = (m.astype(np.float32) / 255.0)[..., None]
            return dst * (1 - w) + src * w

        out = np.zeros((H, W, 3), np.float32)
        out = over(out, hair_img * 0.8, back)
        out = over(out, ear_img, ears)
        out = over(out, skin_img, face)
        out = over(out, hair_img, cap)
        alpha = np.maximum.reduce([back, ears, face, cap]).astype(np.float32) / 255.0
        img = np.clip(out, 0, 255).astype(np.uint8)
        return img, alpha

    def draw_features(self, img: np.ndarray, p: np.ndarray, eye_openness: float, gaze: tuple[float, float],
                      yaw: float) -> None:  # fmt: skip
        """Draw brows, eyes, nose and mouth on ``img`` (canonical pose) for face parameters ``p``."""
        cv2, s = self.cv2, self.subject
        smile, mouth_open, brow_raise, brow_inner, brow_lower, eye_open, cheek, corner_down, _ = p
        du = 0.12 * yaw
        skin = self.skin
        aa = cv2.LINE_AA

        # eyebrows
        for side in (-1, 1):
            t = _BROW_T
            u = side * (0.13 + 0.03 * (1 - brow_lower) - 0.03 * brow_lower * (1 - t) + 0.47 * t) + du
            v = -0.31 - 0.06 * np.sin(np.pi * np.clip(t * 1.1, 0, 1)) + 0.03 * t
            v = v - 0.08 * brow_raise - 0.08 * brow_inner * (1 - t) ** 1.5 + 0.03 * brow_inner * t
            v = v + 0.045 * brow_lower + 0.04 * brow_lower * (1 - t)
            thick = s.brow_thickness * (0.055 - 0.03 * t)
            poly = self._poly(np.concatenate([u, u[::-1]]), np.concatenate([v - thick / 2, (v + thick / 2)[::-1]]))
            cv2.fillPoly(img, [poly], self.colours["brow"], aa, _SHIFT)
        if brow_lower > 0.15:  # glabella furrows (AU4)
            colour = _rgb(skin * (1 - 0.25 * brow_lower))
            for side in (-1, 1):
                cv2.polylines(img, [self._poly([side * 0.06 + du, side * 0.05 + du], [-0.3, -0.2])], False, colour,
                              1, aa, _SHIFT)  # fmt: skip
        if brow_raise > 0.3:  # forehead lines (AU1+2)
            colour = _rgb(skin * (1 - 0.2 * brow_raise))
            for k in range(2):
                u = _FOREHEAD_U
                cv2.polylines(img, [self._poly(u + du, -0.4 - 0.05 * k + 0.08 * u**2)], False, colour, 1, aa, _SHIFT)

        # eyes
        openness = max(0.0, (1.0 + 0.45 * eye_open - 0.3 * cheek)) * eye_openness
        lower_lift = 0.35 * cheek
        ew = 0.165 * s.eye_size
        for side in (-1, 1):
            ecu, ecv = side * s.eye_spacing + du, -0.12
            t = _EYE_T
            tu = ecu + ew * t
            upper = ecv - 0.085 * s.eye_size * openness * (1 - t**2) ** 0.8 * (1 + 0.15 * side * t)
            lower = ecv + 0.06 * s.eye_size * (1 - lower_lift) * min(1.0, openness + 0.3) * (1 - t**2) ** 0.9
            if openness > 0.08:
                eye_poly = self._poly(np.concatenate([tu, tu[::-1]]), np.concatenate([upper, lower[::-1]]))
                x0, y0 = (eye_poly.min(0) >> _SHIFT) - 2
                x1, y1 = (eye_poly.max(0) >> _SHIFT) + 3
                x0, y0 = max(int(x0), 0), max(int(y0), 0)
                x1, y1 = min(int(x1), self.width), min(int(y1), self.height)
                roi = img[y0:y1, x0:x1]
                cv2.fillPoly(img, [eye_poly], (236, 232, 226), aa, _SHIFT)
                iris = roi.copy()
                icx, icy = self._xy(ecu + gaze[0] * 0.06, ecv + 0.005 + gaze[1] * 0.03)
                org = np.array([x0, y0]) * _SCALE
                centre = tuple(int(c) for c in (np.array([icx, icy]) * _SCALE - org).round())
                r_iris = 0.085 * self.a * s.eye_size
                cv2.circle(iris, centre, int(r_iris * _SCALE), self.colours["iris"], -1, aa, _SHIFT)
                cv2.circle(iris, centre, int(r_iris * _SCALE), self.colours["iris_ring"], 1, aa,
                           _SHIFT)  # fmt: skip
                cv2.circle(iris, centre, int(0.42 * r_iris * _SCALE), (12, 10, 10), -1, aa, _SHIFT)
                glint = (centre[0] - int(0.35 * r_iris * _SCALE), centre[1] - int(0.35 * r_iris * _SCALE))
                cv2.circle(iris, glint, int(max(0.18 * r_iris, 0.8) * _SCALE), (250, 250, 250), -1, aa, _SHIFT)
                inside = np.zeros(roi.shape[:2], np.uint8)
                cv2.fillPoly(inside, [eye_poly - org.astype(np.int32)], 255, aa, _SHIFT)
                w = inside.astype(np.float32)[..., None] / 255.0
                roi[:] = (roi * (1 - w) + iris * w).astype(np.uint8)
                cv2.polylines(img, [self._poly(tu, lower)], False, self.colours["lower_lid"], 1, aa, _SHIFT)
            # upper lid, lashes and crease
            lid = max(1, int(round(self.a * 0.035)))
            cv2.polylines(img, [self._poly(tu, upper)], False, (25, 18, 16), lid, aa, _SHIFT)
            crease = upper - 0.05 - 0.02 * openness * (1 - t**2)
            cv2.polylines(img, [self._poly(tu[2:-2], crease[2:-2])], False, self.colours["crease"], 1, aa, _SHIFT)

        # nose
        nu = du * 1.5
        for side in (-1, 1):
            ala = self._poly(nu + side * np.array([0.045, 0.1, 0.115, 0.09, 0.05]),
                             np.array([0.08, 0.2, 0.27, 0.31, 0.31]))  # fmt: skip
            cv2.polylines(img, [ala], False, self.colours["ala"], max(1, int(self.a * 0.02)), aa, _SHIFT)
            cv2.ellipse(img, _fixed(*self._xy(nu + side * 0.055, 0.3)), _fixed(0.038 * self.a, 0.018 * self.b),
                        side * 15, 0, 360, self.colours["nostril"], -1, aa, _SHIFT)  # fmt: skip
        cv2.ellipse(img, _fixed(*self._xy(nu - 0.015, 0.25)), _fixed(0.04 * self.a, 0.025 * self.b), 0, 0, 360,
                    self.colours["nose_tip"], -1, aa, _SHIFT)  # fmt: skip

        # nasolabial folds (smile, cheek raise)
        fold = float(np.clip(0.4 * smile + 0.5 * cheek, 0, 1))
        mw = s.mouth_width * (1 + 0.2 * max(smile, 0) + 0.05 * mouth_open - 0.1 * corner_down)
        mv = 0.52
        corner_v = mv - 0.1 * smile + 0.07 * corner_down
        if fold > 0.1:
            for side in (-1, 1):
                t = _FOLD_T
                u = du + side * (0.17 + (mw + 0.05 - 0.17) * t + 0.05 * np.sin(np.pi * t))
                v = 0.27 + (corner_v + 0.06 - 0.27) * t
                cv2.polylines(img, [self._poly(u, v)], False, _rgb(skin * (1 - 0.3 * fold)), 1, aa, _SHIFT)

        # mouth: lips, inner mouth, teeth
        sgrid = _MOUTH_S
        mu = du + mw * sgrid
        bend = (corner_v - mv) * sgrid**2
        gap = 0.16 * mouth_open + 0.04 * max(smile - 0.3, 0)
        upper_outer = mv - 0.055 * (1 - sgrid**2) ** 0.7 + 0.014 * np.exp(-((sgrid / 0.12) ** 2)) + bend
        upper_inner = mv - 0.018 * mouth_open * (1 - sgrid**2) + bend
        lower_inner = mv + gap * (1 - sgrid**2) ** 0.9 + bend
        lower_outer = lower_inner + 0.07 * (1 - sgrid**2) ** 0.7 + 0.008
        lips = self._poly(np.concatenate([mu, mu[::-1]]), np.concatenate([upper_outer, lower_outer[::-1]]))
        cv2.fillPoly(img, [lips], self.colours["lip"], aa, _SHIFT)
        cv2.ellipse(img, _fixed(*self._xy(du, lower_outer[10] - 0.03)), _fixed(0.12 * self.a, 0.012 * self.b), 0, 0,
                    360, self.colours["lip_shine"], -1, aa, _SHIFT)  # fmt: skip
        if gap > 0.012:
            inner = self._poly(np.concatenate([mu, mu[::-1]]), np.concatenate([upper_inner, lower_inner[::-1]]))
            cv2.fillPoly(img, [inner], (70, 22, 28), aa, _SHIFT)
            teeth_h = np.minimum(0.05, np.maximum(lower_inner - upper_inner - 0.005, 0))
            k = slice(4, 17)
            teeth = self._poly(np.concatenate([mu[k], mu[k][::-1]]),
                               np.concatenate([upper_inner[k], (upper_inner + teeth_h)[k][::-1]]))  # fmt: skip
            cv2.fillPoly(img, [teeth], (232, 226, 214), aa, _SHIFT)
        cv2.polylines(img, [self._poly(mu, upper_inner)], False, self.colours["lip_line"], 1, aa, _SHIFT)

    def render(self, p: np.ndarray, pose: np.ndarray, eye_openness: float, gaze: tuple[float, float]
               ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """One RGB frame ``[H, W, 3]`` uint8 and the face box ``[4]`` (x0, y0, x1, y1) it was drawn in.

        ``pose`` = (roll degrees, dx pixels, dy pixels, scale, yaw in [-1, 1]).
        """
        cv2 = self.cv2
        roll, dx, dy, scale, yaw = pose
        layer = self.base.copy()
        self.draw_features(layer, p, eye_openness, gaze, yaw)
        centre = (float(self.cx), float(self.cy + 0.6 * self.b))
        matrix = cv2.getRotationMatrix2D(centre, float(roll), float(scale))
        matrix[:, 2] += (dx, dy)
        size = (self.width, self.height)
        # warp and blend only the region the head can cover
        cover = self.head_corners @ matrix.T
        x0, y0 = np.maximum(np.floor(cover.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(cover.max(0)).astype(int) + 1, (self.width, self.height))
        frame = self.background.copy()
        if x1 > x0 and y1 > y0:
            local = matrix.copy()
            local[:, 2] -= (x0, y0)
            roi_size = (int(x1 - x0), int(y1 - y0))
            layer = cv2.warpAffine(layer, local, roi_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            alpha = cv2.warpAffine(self.alpha, local, roi_size, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT)  # fmt: skip
            roi = frame[y0:y1, x0:x1]
            roi[:] = cv2.blendLinear(layer, np.ascontiguousarray(roi), alpha, 1.0 - alpha)
        corners = np.array([[self.cx - self.a, self.cy - self.b, 1], [self.cx + self.a, self.cy - self.b, 1],
                            [self.cx - self.a, self.cy + self.b, 1], [self.cx + self.a, self.cy + self.b, 1]])  # fmt: skip
        warped = corners @ matrix.T
        box = np.array([*warped.min(0), *warped.max(0)], np.float32)
        return frame, box


# ---------------------------------------------------------------------------------------------------- voice


def _resonator(frequency: float, bandwidth: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Second-order formant resonator with unit gain at 0 Hz (Klatt)."""
    r = math.exp(-math.pi * bandwidth / sample_rate)
    c = -r * r
    b = 2 * r * math.cos(2 * math.pi * frequency / sample_rate)
    return np.array([1.0 - b - c]), np.array([1.0, -b, -c])


_VOWEL_OPENNESS = np.array([1.0, 0.7, 0.35, 0.75, 0.45])  # jaw opening of /a e i o u/, drives the lips


def _synthesize_voice(
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
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import lfilter

    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    ctrl_t = np.arange(voice_params.shape[0]) / control_rate
    pitch, prange, loud, rate, tremor, breath, tension, laugh = (
        np.interp(t, ctrl_t, voice_params[:, k]) for k in range(voice_params.shape[1])
    )

    # syllables: rate-modulated clock; each syllable is a consonant burst then a voiced vowel, some are pauses
    rate_hz = 4.2 * 2.0 ** (0.55 * rate)
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
    voiced_env = _smoothstep((frac - 0.12) / 0.12) * _smoothstep((0.9 - frac) / 0.15)
    voiced_env = voiced_env * stress[index] * ~pause[index]

    # pitch contour in semitones above the subject's base pitch
    tremor_phase = 2 * np.pi * 5.5 * t + rng.uniform(0, 2 * np.pi)
    semitones = 4.0 * pitch + (1.0 + 1.5 * (prange + 1.0)) * accent[index] * np.sin(np.pi * frac)
    semitones += -1.5 * t / duration + 1.2 * tremor * np.sin(tremor_phase)
    semitones += _random_walk(rng, n // 80 + 2, 1, 0.3, 4)[:, 0].repeat(80)[:n]
    f0 = subject.base_pitch_hz * 2.0 ** (semitones / 12.0)
    cycle = np.cumsum(f0) / sample_rate
    p = cycle - np.floor(cycle)
    open_phase, close_phase = 0.4, 0.17 - 0.11 * tension  # a short closing phase = a tense, bright voice
    glottal = np.where(
        p < open_phase,
        0.5 * (1 - np.cos(np.pi * p / open_phase)),
        np.where(p < open_phase + close_phase, np.cos(0.5 * np.pi * np.minimum((p - open_phase) / close_phase, 1)), 0),
    )
    source = np.diff(glottal, prepend=glottal[0]) * (sample_rate / 200.0)
    noise = rng.standard_normal(n)
    amplitude = voiced_env * (1 + 0.45 * tremor * np.sin(tremor_phase + 0.7))
    excitation = amplitude * (source + (0.08 + 0.9 * breath) * noise * (0.4 + 0.6 * glottal))

    # laughter: a bout of breathy /a/ pulses near the apex, replacing speech where it is loud enough
    level = np.clip((laugh - 0.2) / 0.5, 0, 1)
    bout_start = apex_time + rng.uniform(-0.2, 0.2)
    bout = _smoothstep((t - bout_start) / 0.08) * _smoothstep((bout_start + 0.4 + 0.6 * level - t) / 0.08)
    laughing = bout * level * np.sin(np.pi * ((t - bout_start) * 4.8 % 1.0)) ** 2
    laugh_cycle = np.cumsum(f0 * 2.0 ** (5 / 12)) / sample_rate
    laugh_p = laugh_cycle - np.floor(laugh_cycle)
    laugh_source = np.diff(0.5 * (1 - np.cos(2 * np.pi * laugh_p)), prepend=0.0) * (sample_rate / 200.0)
    excitation = excitation * (1 - bout * level) + laughing * (laugh_source + 1.2 * noise)
    vowel_at = np.where(laughing > 0.01, 0, vowel[index])

    # formant filter bank, one cascade per vowel, cross-faded over 10 ms where the vowel changes
    speech = np.zeros(n)
    fade = max(1, int(0.01 * sample_rate))
    for v, formants in enumerate(_VOWEL_FORMANTS):
        selected = vowel_at == v
        if not selected.any():
            continue
        y = excitation
        for frequency, bandwidth in zip(formants * subject.formant_scale, _FORMANT_BANDWIDTHS):
            y = lfilter(*_resonator(min(frequency, 0.45 * sample_rate), bandwidth, sample_rate), y)
        speech += uniform_filter1d(selected.astype(np.float64), fade, mode="nearest") * y
    burst = np.exp(-0.5 * ((frac - 0.05) / 0.025) ** 2) * fricative[index] * ~pause[index] * (1 - bout)
    hiss = np.diff(noise, prepend=0.0)
    speech = speech + 0.2 * burst * hiss * (0.6 + 0.6 * tension)

    # calibrated level: loudness in dB over a constant room-noise floor (survives per-clip normalisation as SNR)
    reference = np.sqrt(np.mean(speech[voiced_env > 0.3] ** 2)) if (voiced_env > 0.3).any() else 1.0
    speech = speech / max(reference, 1e-8) * 0.08 * 10.0 ** (9.0 * loud / 20.0)
    room = lfilter([0.05], [1.0, -0.95], rng.standard_normal(n)) * 0.004 / 0.16
    waveform = np.clip(speech + room, -1.0, 1.0).astype(np.float32)
    talking = voiced_env * _VOWEL_OPENNESS[vowel[index]]
    return waveform, talking.astype(np.float32), laughing.astype(np.float32)


# --------------------------------------------------------------------------------------------------- a clip


@dataclass
class SyntheticClip:
    """One rendered clip.

    Attributes:
        frames: ``[T, H, W, 3]`` uint8 RGB.
        waveform: ``[S]`` float32 mono in [-1, 1] at ``sample_rate``.
        labels: ``[6]`` intensities, order ``EMOTION_NAMES``.
        face_parameters: ``[T, len(FACE_PARAMETER_NAMES)]`` expression actually drawn in each frame.
        voice_parameters: ``[T_c, len(VOICE_PARAMETER_NAMES)]`` voice controls at 100 Hz.
        envelope: ``[T]`` expression envelope (0 neutral, 1 apex) at the frame times.
        face_boxes: ``[T, 4]`` (x0, y0, x1, y1) pixel box of the drawn face (hair excluded) per frame.
        timestamps: ``[T]`` frame times in seconds.
    """

    frames: np.ndarray
    waveform: np.ndarray
    fps: float
    sample_rate: int
    labels: np.ndarray
    face_parameters: np.ndarray
    voice_parameters: np.ndarray
    envelope: np.ndarray
    face_boxes: np.ndarray
    timestamps: np.ndarray
    subject: SyntheticSubject


def _frame_size(size: int | Sequence[int]) -> tuple[int, int]:
    width, height = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise ValueError(f"size must be even and at least 64 pixels per side (H.264, yuv420p), got {size!r}.")
    return int(width), int(height)


def render_clip(
    labels: Sequence[float] | np.ndarray,
    subject: SyntheticSubject | None = None,
    *,
    duration: float = 2.0,
    fps: float = 25,
    size: int | Sequence[int] = 256,
    sample_rate: int = 24000,
    seed: int | np.random.Generator | np.random.SeedSequence = 0,
) -> SyntheticClip:
    """Render one synthetic clip (frames and waveform) for six intensity ``labels`` in [0, 1].

    Args:
        labels: six intensities, order ``EMOTION_NAMES``.
        subject: appearance and voice; drawn from ``seed`` when None.
        size: frame width and height in pixels (int for square, or ``(width, height)``).
        seed: an int, SeedSequence or Generator for the clip's randomness (expression timing, noise, pose).
    """
    labels = np.asarray(labels, dtype=np.float64)
    if labels.shape != (len(EMOTION_NAMES),) or not np.all(np.isfinite(labels)):
        raise ValueError(f"labels must be {len(EMOTION_NAMES)} finite values, got shape {labels.shape}.")
    if labels.min() < 0 or labels.max() > 1:
        raise ValueError(f"labels must lie in [0, 1], got {labels.tolist()}.")
    if duration <= 0 or fps <= 0 or sample_rate < 8000:
        raise ValueError("duration and fps must be positive and sample_rate at least 8000 Hz.")
    width, height = _frame_size(size)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if subject is None:
        subject = sample_subject(rng)

    num_frames = max(1, int(round(duration * fps)))
    frame_t = np.arange(num_frames) / fps
    control_rate = 100.0
    ctrl_t = np.arange(int(math.ceil(duration * control_rate)) + 1) / control_rate
    envelope_fn_rng = np.random.default_rng(rng.integers(2**63))
    envelope_ctrl = _expression_envelope(envelope_fn_rng, ctrl_t, duration)
    envelope = np.interp(frame_t, ctrl_t, envelope_ctrl)
    apex_time = float(ctrl_t[np.argmax(envelope_ctrl > 0.95 * envelope_ctrl.max())])
    gain = subject.expressiveness

    # voice controls at 100 Hz, then the waveform
    voice_target = VOICE_MAPPING @ labels + rng.normal(0, 0.08, len(VOICE_PARAMETER_NAMES))
    voice = np.asarray(subject.neutral_voice) + gain * envelope_ctrl[:, None] * voice_target[None, :]
    voice += _random_walk(rng, len(ctrl_t), len(VOICE_PARAMETER_NAMES), 0.04, 10)
    voice = np.clip(voice, _VOICE_RANGE[:, 0], _VOICE_RANGE[:, 1])
    waveform, talking, laughing = _synthesize_voice(rng, subject, voice, control_rate, duration, sample_rate,
                                                    apex_time)  # fmt: skip

    # face parameters per frame, lips following the voice
    face_target = FACE_MAPPING @ labels + rng.normal(0, 0.08, len(FACE_PARAMETER_NAMES))
    face = np.asarray(subject.neutral_face) + gain * envelope[:, None] * face_target[None, :]
    face += _random_walk(rng, num_frames, len(FACE_PARAMETER_NAMES), 0.04, max(2, int(fps / 4)))
    sample_at = np.minimum((frame_t * sample_rate).astype(np.int64), len(waveform) - 1)
    window = max(1, int(sample_rate / fps / 2))
    talk = np.array([talking[max(0, i - window) : i + window].mean() for i in sample_at])
    laugh = np.array([laughing[max(0, i - window) : i + window].mean() for i in sample_at])
    face[:, 1] += 0.3 * talk + 0.5 * laugh
    face[:, 0] += 0.3 * laugh
    face = np.clip(face, _FACE_RANGE[:, 0], _FACE_RANGE[:, 1])

    # head pose: roll, sway, nod, yaw; faster and larger with head_motion
    motion = face[:, 8]
    nod_phase = np.cumsum(2 * np.pi * (0.7 + 1.8 * motion) / fps) + rng.uniform(0, 2 * np.pi)
    slow_phase = 2 * np.pi * rng.uniform(0.2, 0.5) * frame_t + rng.uniform(0, 2 * np.pi, (3, 1))
    roll = (1.5 + 6.0 * motion) * np.sin(slow_phase[0])
    dx = (0.008 + 0.02 * motion) * width * np.sin(slow_phase[1])
    dy = (0.004 + 0.025 * motion) * height * np.sin(nod_phase)
    yaw = (0.1 + 0.35 * motion) * np.sin(slow_phase[2])
    scale = 1.0 + 0.02 * np.sin(0.5 * slow_phase[1] + 1.0)
    pose = np.stack([roll, dx, dy, scale, yaw], 1)
    gaze = np.clip(_random_walk(rng, num_frames, 2, 0.25, max(2, int(fps / 3))), -0.6, 0.6)

    # blinks (about one every 3 s, 120-200 ms)
    eyes = np.ones(num_frames)
    profile = np.array([0.45, 0.05, 0.05, 0.35, 0.8])
    for start in np.flatnonzero(rng.random(num_frames) < 0.33 / fps):
        length = int(np.clip(round(0.16 * fps), 2, len(profile)))
        prof = np.interp(np.linspace(0, len(profile) - 1, length), np.arange(len(profile)), profile)
        stop = min(num_frames, start + length)
        eyes[start:stop] = np.minimum(eyes[start:stop], prof[: stop - start])

    renderer = _FaceRenderer(subject, width, height)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    boxes = np.empty((num_frames, 4), np.float32)
    for i in range(num_frames):
        frames[i], boxes[i] = renderer.render(face[i], pose[i], float(eyes[i]), (float(gaze[i, 0]), float(gaze[i, 1])))
    return SyntheticClip(
        frames=frames,
        waveform=waveform,
        fps=float(fps),
        sample_rate=int(sample_rate),
        labels=labels.astype(np.float32),
        face_parameters=face.astype(np.float32),
        voice_parameters=voice.astype(np.float32),
        envelope=envelope.astype(np.float32),
        face_boxes=boxes,
        timestamps=frame_t.astype(np.float32),
        subject=subject,
    )


# -------------------------------------------------------------------------------------------------- writing


def write_clip(path: str | os.PathLike, clip: SyntheticClip, *, crf: int = 23) -> Path:
    """Encode ``clip`` as an MP4 file: H.264 (yuv420p, single-threaded x264) video and AAC mono audio."""
    import av

    path = Path(path)
    num_frames, height, width, _ = clip.frames.shape
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=_fraction(clip.fps))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.options = {"preset": "veryfast", "crf": str(int(crf)), "threads": "1"}
        audio = container.add_stream("aac", rate=clip.sample_rate)
        audio.codec_context.layout = "mono"
        audio.bit_rate = 64000
        audio.codec_context.options = {"aac_coder": "fast"}
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(clip.frames[i], format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        chunk = 1024
        samples = clip.waveform.astype(np.float32)
        for start in range(0, len(samples), chunk):
            block = samples[start : start + chunk]
            frame = av.AudioFrame.from_ndarray(block[None, :], format="fltp", layout="mono")
            frame.sample_rate = clip.sample_rate
            frame.pts = start
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    return path


def _fraction(value: float):
    from fractions import Fraction

    return Fraction(value).limit_denominator(1001)  # 25 -> 25, 29.97 -> 2997/100, 30000/1001 stays


# -------------------------------------------------------------------------------------------------- data set


def _render_and_write(task: dict) -> dict:
    subject = SyntheticSubject(**task["subject"])
    clip = render_clip(
        np.asarray(task["labels"]),
        subject,
        duration=task["duration"],
        fps=task["fps"],
        size=task["size"],
        sample_rate=task["sample_rate"],
        seed=np.random.SeedSequence([task["seed"], 1, task["index"]]),
    )
    write_clip(task["path"], clip, crf=task["crf"])
    apex = int(np.argmax(clip.envelope))
    return {"clip_id": task["clip_id"], "apex_time": float(clip.timestamps[apex]),
            "face_parameters_apex": [round(float(x), 4) for x in clip.face_parameters[apex]]}  # fmt: skip


def _worker_main(task_file: str, result_file: str) -> None:
    """Entry point of a worker process: render the clips listed in ``task_file``, one JSON line per clip."""
    import cv2

    cv2.setNumThreads(1)
    tasks = json.loads(Path(task_file).read_text())
    with open(result_file, "a") as out:
        for task in tasks:
            out.write(json.dumps({"index": task["index"], **_render_and_write(task)}) + "\n")
            out.flush()


def _run_in_worker_processes(tasks: list[dict], num_workers: int, progress: bool) -> list[dict]:
    """Render ``tasks`` in fresh worker interpreters.

    Fresh interpreters (not multiprocessing's fork, nor spawn / forkserver): forking a process whose OpenCV, torch
    or MediaPipe thread pools are running can deadlock the children, and spawn / forkserver re-import the caller's
    ``__main__`` (scripts without a ``if __name__ == "__main__":`` guard would break).
    """
    import subprocess
    import sys
    import tempfile
    import time

    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    package_root = str(Path(__file__).resolve().parents[2])  # so that the child finds this very emi_hf
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])
    code = "import sys; from emi_hf.data.synthetic import _worker_main; _worker_main(sys.argv[1], sys.argv[2])"
    with tempfile.TemporaryDirectory(prefix="emi_hf_synthetic_") as tmp:
        workers = []
        for k in range(min(num_workers, len(tasks))):
            task_file, result_file = Path(tmp) / f"tasks{k}.json", Path(tmp) / f"results{k}.jsonl"
            task_file.write_text(json.dumps(tasks[k::num_workers]))
            result_file.touch()
            log = open(Path(tmp) / f"log{k}.txt", "w+")
            process = subprocess.Popen([sys.executable, "-c", code, str(task_file), str(result_file)], env=env,
                                       stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
            workers.append((process, result_file, log))
        bar = _progress(None, len(tasks), progress)
        try:
            while True:
                running = [p for p, _, _ in workers if p.poll() is None]
                if bar is not None:
                    done = sum(f.read_text().count("\n") for _, f, _ in workers)
                    bar.update(done - bar.n)
                if not running:
                    break
                time.sleep(0.2)
        finally:
            for process, _, log in workers:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            if bar is not None:
                bar.close()
        for process, _, log in workers:
            if process.returncode != 0:
                log.seek(0)
                raise RuntimeError(f"a synthetic-data worker failed (exit code {process.returncode}):\n"
                                   f"{log.read()[-4000:]}")  # fmt: skip
            log.close()
        results = [json.loads(line) for _, f, _ in workers for line in f.read_text().splitlines()]
    by_index = {r.pop("index"): r for r in results}
    return [by_index[t["index"]] for t in tasks]


def _write_split_csv(path: Path, clip_ids: list[str], labels: np.ndarray | None) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HUME_HEADER if labels is not None else HUME_HEADER[:1])
        for i, clip_id in enumerate(clip_ids):
            row = [clip_id] if labels is None else [clip_id, *(f"{x:.4f}" for x in labels[i])]
            writer.writerow(row)


def generate_synthetic_dataset(
    output_dir: str | os.PathLike,
    num_train: int = 64,
    num_valid: int = 32,
    num_test: int = 0,
    *,
    duration: float = 2.0,
    fps: float = 25,
    size: int | Sequence[int] = 256,
    sample_rate: int = 24000,
    seed: int = 0,
    clips_per_subject: int = 5,
    crf: int = 23,
    num_workers: int = 1,
    progress: bool = False,
) -> Path:
    """Write a synthetic audiovisual EMI data set in the Hume-Vidmimic2 layout (see the module docstring).

    Writes ``output_dir/videos/{id:05d}.mp4``, ``train_split.csv``, ``valid_split.csv`` (``test_split.csv`` when
    ``num_test > 0``, Filename only) and ``synthetic_metadata.json``. If ``output_dir`` already holds a data set
    generated with the same arguments and generator version, and all its videos exist, nothing is rewritten.

    Args:
        num_train, num_valid, num_test: clips per split (ids run train, then validation, then test).
        duration: clip length in seconds; fps: video frame rate; size: frame side (or ``(width, height)``).
        sample_rate: audio sampling rate of the AAC track (resample to 16 kHz when reading).
        seed: everything (labels, subjects, expressions, noise) derives from it; independent of ``num_workers``.
        clips_per_subject: average clips per synthetic subject; subjects are not shared between splits.
        crf: x264 quality (lower is better and larger).
        num_workers: worker processes rendering and encoding clips in parallel (fresh interpreters, each importing
            emi_hf once: a few seconds of start-up, worth it from a few dozen clips on).
    Returns:
        ``output_dir`` as a Path.
    """
    counts = {"train": int(num_train), "validation": int(num_valid), "test": int(num_test)}
    if min(counts.values()) < 0 or counts["train"] + counts["validation"] == 0:
        raise ValueError(f"clip counts must be >= 0 with at least one train or validation clip, got {counts}.")
    if counts["train"] + counts["validation"] + counts["test"] > 100_000:
        raise ValueError("at most 100000 clips: ids are 5 digits.")
    width, height = _frame_size(size)
    output_dir = Path(output_dir)
    video_dir = output_dir / "videos"
    config = {
        "num_train": counts["train"], "num_valid": counts["validation"], "num_test": counts["test"],
        "duration": float(duration), "fps": float(fps), "size": [width, height], "sample_rate": int(sample_rate),
        "seed": int(seed), "clips_per_subject": int(clips_per_subject), "crf": int(crf),
    }  # fmt: skip
    metadata_path = output_dir / "synthetic_metadata.json"
    if metadata_path.is_file():
        try:
            previous = json.loads(metadata_path.read_text())
        except (OSError, ValueError):
            previous = {}
        if (
            previous.get("config") == config
            and previous.get("generator_version") == GENERATOR_VERSION
            and all((video_dir / f"{c['clip_id']}.mp4").is_file() for c in previous.get("clips", []))
        ):
            return output_dir

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0]))
    total = sum(counts.values())
    labels = sample_labels(rng, total)
    subjects: list[SyntheticSubject] = []
    clips: list[dict] = []
    clip_index = 0
    for split, count in counts.items():
        if count == 0:
            continue
        pool = [sample_subject(rng, len(subjects) + k) for k in range(max(1, math.ceil(count / clips_per_subject)))]
        subjects.extend(pool)
        assignment = rng.integers(0, len(pool), count)
        for k in range(count):
            clips.append({"clip_id": f"{clip_index:05d}", "split": split, "subject_id": pool[assignment[k]].subject_id,
                          "labels": [float(x) for x in labels[clip_index]]})  # fmt: skip
            clip_index += 1

    video_dir.mkdir(parents=True, exist_ok=True)
    tasks = [
        {"index": i, "clip_id": c["clip_id"], "path": str(video_dir / f"{c['clip_id']}.mp4"), "labels": c["labels"],
         "subject": asdict(subjects[c["subject_id"]]), "duration": float(duration), "fps": float(fps),
         "size": (width, height), "sample_rate": int(sample_rate), "seed": int(seed), "crf": int(crf)}
        for i, c in enumerate(clips)
    ]  # fmt: skip
    if num_workers > 1 and len(tasks) > 1:
        results = _run_in_worker_processes(tasks, int(num_workers), progress)
    else:
        results = [_render_and_write(t) for t in _progress(tasks, len(tasks), progress)]
    for clip, result in zip(clips, results):
        clip.update(apex_time=result["apex_time"], face_parameters_apex=result["face_parameters_apex"])

    for split, filename in SPLIT_FILES.items():
        selected = [c for c in clips if c["split"] == split]
        path = output_dir / filename
        if not selected:
            if path.exists():
                path.unlink()
            continue
        split_labels = None if split == "test" else np.array([c["labels"] for c in selected])
        _write_split_csv(path, [c["clip_id"] for c in selected], split_labels)
    metadata = {
        "generator": "emi_hf.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "config": config,
        "emotion_names": list(EMOTION_NAMES),
        "face_parameter_names": list(FACE_PARAMETER_NAMES),
        "voice_parameter_names": list(VOICE_PARAMETER_NAMES),
        "face_mapping": FACE_MAPPING.tolist(),
        "voice_mapping": VOICE_MAPPING.tolist(),
        "face_share": modality_shares(),
        "label_correlation": LABEL_CORRELATION.tolist(),
        "label_beta": list(LABEL_BETA),
        "subjects": [asdict(s) for s in subjects],
        "clips": clips,
    }
    metadata_path.write_text(json.dumps(metadata, indent=1))
    return output_dir


def _progress(iterable, total: int, enabled: bool):
    """``iterable`` wrapped in a tqdm bar when ``enabled``; with ``iterable=None``, the bar itself (or None)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc="synthetic clips", unit="clip")
