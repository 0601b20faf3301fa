"""Labels of the synthetic set and how they become expression: emotion -> face / voice parameter mappings, the
label distribution, and the within-clip time course (envelope, slow random walks). Tables in the package docstring.
"""

from __future__ import annotations

import numpy as np

from ...models.configuration_emi import EMOTION_NAMES

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
FACE_RANGE = np.array([[-0.6, 1.2], [0.0, 1.0], [-0.5, 1.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 1.0], [0.0, 1.0],
                       [0.0, 1.0], [0.0, 1.0]])  # fmt: skip
VOICE_RANGE = np.array([[-1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0],
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


def modality_shares() -> dict[str, float]:
    """Share of each emotion's expression carried by the face: ``|F[:, j]| / (|F[:, j]| + |V[:, j]|)``."""
    face = np.linalg.norm(FACE_MAPPING, axis=0)
    voice = np.linalg.norm(VOICE_MAPPING, axis=0)
    return {name: float(f / (f + v)) for name, f, v in zip(EMOTION_NAMES, face, voice)}


def sample_labels(rng: np.random.Generator, num_clips: int) -> np.ndarray:
    """Correlated intensities ``[num_clips, 6]`` in [0, 1] (Gaussian copula, Beta marginals)."""
    from scipy.stats import beta, norm

    chol = np.linalg.cholesky(LABEL_CORRELATION)
    z = rng.standard_normal((num_clips, len(EMOTION_NAMES))) @ chol.T
    labels = beta.ppf(norm.cdf(z), *LABEL_BETA)
    return np.clip(np.round(labels, 4), 0.0, 1.0).astype(np.float64)


# ---------------------------------------------------------------------------------------------- expression


def smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, a smooth cubic between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def expression_envelope(rng: np.random.Generator, times: np.ndarray, duration: float) -> np.ndarray:
    """Neutral, onset, apex and (in some clips) a partial offset: values in [0, 1] at ``times`` (seconds)."""
    onset = rng.uniform(0.1, 0.35) * duration
    rise = rng.uniform(0.25, 0.6)
    envelope = smoothstep((times - onset) / rise)
    if rng.random() < 0.5:
        offset = rng.uniform(0.7, 0.9) * duration
        envelope = envelope * (1 - rng.uniform(0.2, 0.5) * smoothstep((times - offset) / 0.4))
    return envelope


def random_walk(rng: np.random.Generator, num_steps: int, num_params: int, scale: float, smooth: int) -> np.ndarray:
    """``[num_steps, num_params]`` slow noise: white noise smoothed by a Hann window of ``2 * smooth + 1`` steps."""
    steps = rng.normal(0, 1, (num_steps + 2 * smooth, num_params))
    kernel = np.hanning(2 * smooth + 1)
    kernel /= np.sqrt((kernel**2).sum())
    walk = np.stack([np.convolve(steps[:, k], kernel, mode="valid")[:num_steps] for k in range(num_params)], 1)
    return scale * walk
