"""Action Unit backends, behind one interface (:class:`AUBackend`).

* ``"mediapipe"`` (default, offline): geometric AU intensity estimates from the MediaPipe face mesh.
* ``"blendshapes"``: the outputs of a trained model, MediaPipe's blendshape model (part of the Tasks API's face
  landmarker, see :mod:`emi_hf.media.mediapipe_tasks`), mapped to AUs (table below).
* ``"openface"``: the ``AUxx_r`` columns of OpenFace 2.x FeatureExtraction CSVs, matched to frames by timestamp
  (or by frame number).
* ``"pyfaceau"``: optional, the pyfaceau package (a Python port of OpenFace 2.2's AU models) when installed.
* ``None``: no AU channel values (zeros), for models that do not use them.

All backends give intensities on OpenFace's 0..5 scale, in the order of ``au_names``; frames where a value could
not be obtained are NaN until the pipeline fills them (see :func:`fill_missing`).

The ``mediapipe`` geometric definitions
---------------------------------------
The mesh (pixels, z in the units of x) is first expressed in a face frame that removes head pose and face size:
origin at the midpoint of the two eye centres (eye centre = mean of the two eye corners, 33/133 and 263/362), x
axis from the subject's right to left eye centre, y axis "up" from the nose tip (4) to the nasion (168) made
orthogonal to x, z = x cross y; lengths are divided by the inter-ocular distance (IOD, between the eye centres).
``h(i)`` is the height of landmark ``i`` in that frame (IOD units, positive above the eye line), ``d(i, j)`` the 3-D
distance. Each AU has one measurement ``m`` that grows with the action; bilateral ones average both sides:

======  =====================  ====================================================================  =======  =====
AU      name                   measurement m (IOD units)                                             neutral  range
======  =====================  ====================================================================  =======  =====
AU01    inner brow raiser      mean h of the inner brow (107, 55 / 336, 285)                          0.10     0.20
AU02    outer brow raiser      mean h of the outer brow (70, 46 / 300, 276)                           0.22     0.20
AU04    brow lowerer           -(mean h of inner+middle lower brow (55, 52 / 285, 282)                -0.55    0.25
                               + x-gap between the inner brows 55-285)
AU05    upper lid raiser       eye opening: mean over 3 lid pairs of d(upper, lower) / eye width      0.30     0.12
                               (160-144, 159-145, 158-153 over 33-133; mirrored 387-373, ... 263-362)
AU06    cheek raiser           h(lower lid 145/374) - h(eye corners) + h(upper cheek 118/347)         -0.34    0.15
AU09    nose wrinkler          mean h of the nostril wings (64, 98 / 294, 327)                        -0.72    0.15
AU12    lip corner puller      mean h of the mouth corners (61/291) + 0.5 x mouth width d(61, 291)   -0.45    0.35
AU15    lip corner depressor   mean h of the lip centres (13, 14) - mean h of the mouth corners       -0.18    0.15
AU17    chin raiser            -(h(17) - h(152)): lower-lip-to-chin height, shrinking                 -0.36    0.15
AU20    lip stretcher          mouth width d(61, 291), times (1 - AU12 / 5) so a smile is not a       0.90     0.25
                               stretch
AU25    lips part              inner-lip gap d(13, 14)                                                0.02     0.30
AU26    jaw drop               h(2) - h(152): subnasale-to-chin height                                0.75     0.30
AU45    blink                  -(eye opening of AU05)                                                 -0.26    0.18
======  =====================  ====================================================================  =======  =====

Intensity = 5 * clip((m - neutral) / range, 0, 1): ``neutral`` is the value of a neutral frontal face, ``range``
the change of ``m`` at the strongest (E) intensity. ``neutral`` was set to the typical median of ``m`` over the
real test clips (four people, shared/media), ``range`` from the strongest smiles / blinks / brow movements in
them and from facial proportions; both are approximate across people (brow height or mouth width differ by
about 0.1 IOD between faces, i.e. up to 2 intensity points for the brow AUs).
With ``neutral_baseline=True`` (recommended for person-specific use, as OpenFace's person-specific
normalisation) the neutral value is replaced per clip by a low percentile (``baseline_percentile``, default 10)
of ``m`` over the clip's face frames; for AU05 and AU45, whose ``m`` is bimodal with blinks, the median is used.
These are geometric proxies, not FACS-coded detectors: they move with the right muscles, but their absolute scale
is not calibrated against human coders.

The ``blendshapes`` backend
---------------------------
Unlike the geometry above, these are the outputs of a trained network: MediaPipe's blendshape model (Google's face
landmarker bundle) scores 52 ARKit-style expression coefficients in [0, 1] from the face mesh. Each AU is the mean
of the coefficients that correspond to it in the usual ARKit-to-FACS correspondence, times 5 (OpenFace's 0..5
range); the correspondence is approximate and the scale is the model's, not calibrated against human coders
either. Per-clip neutral baselines do not apply (``au_neutral_baseline`` is for the geometric backend).

======  =========================================  ======  ============================================
AU      blendshapes                                AU      blendshapes
======  =========================================  ======  ============================================
AU01    browInnerUp                                AU12    mouthSmileLeft/Right
AU02    browOuterUpLeft/Right                      AU14    mouthDimpleLeft/Right
AU04    browDownLeft/Right                         AU15    mouthFrownLeft/Right
AU05    eyeWideLeft/Right                          AU17    mouthShrugLower
AU06    cheekSquintLeft/Right                      AU20    mouthStretchLeft/Right
AU07    eyeSquintLeft/Right                        AU25    jawOpen, mouthLowerDownLeft/Right
AU09    noseSneerLeft/Right                        AU26    jawOpen
AU10    mouthUpperUpLeft/Right                     AU45    eyeBlinkLeft/Right
======  =========================================  ======  ============================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import EmiDependencyError, EmiUsageError
from .errors import EmiInputError
from .mediapipe_tasks import BLENDSHAPE_NAMES
from .resampling import nearest_index

__all__ = [
    "AUBackend",
    "BLENDSHAPE_AUS",
    "BlendshapeAUBackend",
    "MediaPipeAUBackend",
    "OpenFaceAUBackend",
    "PyFaceAUBackend",
    "OpenFaceTable",
    "AU_BACKENDS",
    "MEDIAPIPE_AU_DEFINITIONS",
    "OPENFACE_AU_NAMES",
    "build_au_backend",
    "read_openface_csv",
    "match_openface",
    "face_frame_coordinates",
    "fill_missing",
    "check_au_names",
]

# AU name -> (neutral, range, baseline statistic); the measurements are in MediaPipeAUBackend.measure_all.
MEDIAPIPE_AU_DEFINITIONS: dict[str, tuple[float, float, str]] = {
    "AU01": (0.10, 0.20, "low"),
    "AU02": (0.22, 0.20, "low"),
    "AU04": (-0.55, 0.25, "low"),
    "AU05": (0.30, 0.12, "median"),
    "AU06": (-0.34, 0.15, "low"),
    "AU09": (-0.72, 0.15, "low"),
    "AU12": (-0.45, 0.35, "low"),
    "AU15": (-0.18, 0.15, "low"),
    "AU17": (-0.36, 0.15, "low"),
    "AU20": (0.90, 0.25, "low"),
    "AU25": (0.02, 0.30, "low"),
    "AU26": (0.75, 0.30, "low"),
    "AU45": (-0.26, 0.18, "median"),
}

OPENFACE_AU_NAMES = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15",
                     "AU17", "AU20", "AU23", "AU25", "AU26", "AU45")


def check_au_names(processor_au_names: Sequence[str], model_au_names: Sequence[str], where: str = "") -> None:
    """Raises ValueError when a processor's AU list differs (names or order) from a model config's."""
    if list(processor_au_names) != list(model_au_names):
        raise EmiUsageError(
            f"AU mismatch{' (' + where + ')' if where else ''}: the processor gives {list(processor_au_names)} but "
            f"the model expects {list(model_au_names)}. Load the processor saved with this model, or create one "
            f"with `au_names={list(model_au_names)}`."
        )


def fill_missing(values: np.ndarray, face: np.ndarray) -> np.ndarray:
    """NaN AU rows of face frames take the nearest measured face frame's values (0 when none); rows of frames
    without a face are 0. `values` [T, n_au], `face` bool [T]."""
    values = np.array(values, dtype=np.float32, copy=True)
    measured = face & np.isfinite(values).all(axis=1)
    if measured.any():
        positions = np.flatnonzero(measured)
        missing = np.flatnonzero(face & ~measured)
        if len(missing):
            values[missing] = values[positions[nearest_index(positions, missing, ties_to_earlier=False)]]
    else:
        values[face] = 0.0
    values[~face] = 0.0
    values = np.nan_to_num(values, nan=0.0, posinf=5.0, neginf=0.0)
    return np.clip(values, 0.0, 5.0)


class AUBackend:
    """Interface: `au_names` in, intensities [T, n_au] on the 0..5 scale out (NaN = not available)."""

    name = "base"
    supported_aus: tuple[str, ...] = ()

    def __init__(self, au_names: Sequence[str]):
        au_names = tuple(au_names)
        unknown = [name for name in au_names if name not in self.supported_aus]
        if unknown:
            raise EmiUsageError(f"au_backend={self.name!r} cannot estimate {unknown}; it supports "
                                f"{list(self.supported_aus)}. Choose au_names among those or another backend.")
        if len(set(au_names)) != len(au_names):
            raise EmiUsageError(f"au_names has duplicates: {list(au_names)}")
        self.au_names = au_names


def face_frame_coordinates(mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face-frame coordinates (see module doc) of meshes [T, N, 3] -> ([T, N, 3] in IOD units, IOD [T] pixels)."""
    mesh = np.asarray(mesh, dtype=np.float64)
    points = mesh * np.array([1.0, -1.0, -1.0])  # y up, z towards the camera (a rotation: stays right-handed)
    right_eye = points[:, [33, 133]].mean(axis=1)
    left_eye = points[:, [263, 362]].mean(axis=1)
    origin = (right_eye + left_eye) / 2
    x_axis = left_eye - right_eye
    iod = np.linalg.norm(x_axis, axis=-1)
    x_axis = x_axis / np.maximum(iod, 1e-9)[:, None]
    up = points[:, 168] - points[:, 4]
    y_axis = up - (up * x_axis).sum(-1, keepdims=True) * x_axis
    y_axis = y_axis / np.maximum(np.linalg.norm(y_axis, axis=-1), 1e-9)[:, None]
    z_axis = np.cross(x_axis, y_axis)
    basis = np.stack([x_axis, y_axis, z_axis], axis=1)  # [T, 3, 3]
    coords = np.einsum("tnd,tkd->tnk", points - origin[:, None], basis) / np.maximum(iod, 1e-9)[:, None, None]
    return coords, iod


class MediaPipeAUBackend(AUBackend):
    """Geometric AU estimates from the face mesh (definitions and constants in the module doc)."""

    name = "mediapipe"
    supported_aus = tuple(MEDIAPIPE_AU_DEFINITIONS)

    def __init__(self, au_names: Sequence[str], neutral_baseline: bool = False, baseline_percentile: float = 10.0):
        super().__init__(au_names)
        self.neutral_baseline = bool(neutral_baseline)
        self.baseline_percentile = float(baseline_percentile)

    @staticmethod
    def measure_all(mesh: np.ndarray) -> dict[str, np.ndarray]:
        """The measurement `m` of every supported AU for meshes [T, N, 3] -> {AU: [T]}."""
        q, _ = face_frame_coordinates(mesh)
        h = q[..., 1]

        def d(i, j):
            return np.linalg.norm(q[:, i] - q[:, j], axis=-1)

        def mean(*arrays):
            return np.mean(np.stack(arrays), axis=0)

        eye_open = mean(
            (d(160, 144) + d(159, 145) + d(158, 153)) / (3 * d(33, 133)),
            (d(387, 373) + d(386, 374) + d(385, 380)) / (3 * d(263, 362)),
        )
        width = d(61, 291)
        corners = mean(h[:, 61], h[:, 291])
        return {
            "AU01": mean(h[:, 107], h[:, 55], h[:, 336], h[:, 285]),
            "AU02": mean(h[:, 70], h[:, 46], h[:, 300], h[:, 276]),
            "AU04": -(mean(h[:, 55], h[:, 52], h[:, 285], h[:, 282]) + (q[:, 285, 0] - q[:, 55, 0])),
            "AU05": eye_open,
            "AU06": mean(h[:, 145] - (h[:, 33] + h[:, 133]) / 2, h[:, 374] - (h[:, 263] + h[:, 362]) / 2)
            + mean(h[:, 118], h[:, 347]),
            "AU09": mean(h[:, 64], h[:, 98], h[:, 294], h[:, 327]),
            "AU12": corners + 0.5 * width,
            "AU15": mean(h[:, 13], h[:, 14]) - corners,
            "AU17": -(h[:, 17] - h[:, 152]),
            "AU20": width,
            "AU25": d(13, 14),
            "AU26": h[:, 2] - h[:, 152],
            "AU45": -eye_open,
        }

    def intensities(self, measurements: np.ndarray, au12_measurement: np.ndarray | None = None) -> np.ndarray:
        """0..5 intensities [T, n_au] from raw measurements [T, n_au] (NaN rows stay NaN)."""
        measurements = np.asarray(measurements, dtype=np.float64)
        output = np.full(measurements.shape, np.nan, np.float64)
        valid = np.isfinite(measurements).all(axis=1)
        for k, name in enumerate(self.au_names):
            neutral, full_range, statistic = MEDIAPIPE_AU_DEFINITIONS[name]
            column = measurements[:, k]
            if self.neutral_baseline and valid.any():
                if statistic == "median":
                    neutral = float(np.median(column[valid]))
                else:
                    neutral = float(np.percentile(column[valid], self.baseline_percentile))
            output[:, k] = 5.0 * np.clip((column - neutral) / full_range, 0.0, 1.0)
        if "AU20" in self.au_names and au12_measurement is not None:
            neutral, full_range, _ = MEDIAPIPE_AU_DEFINITIONS["AU12"]
            au12 = np.asarray(au12_measurement, np.float64)
            if self.neutral_baseline and valid.any() and np.isfinite(au12[valid]).any():
                neutral = float(np.nanpercentile(au12[valid], self.baseline_percentile))
            smile = np.clip((au12 - neutral) / full_range, 0.0, 1.0)
            k = self.au_names.index("AU20")
            output[:, k] = output[:, k] * (1.0 - smile)
        output[~valid] = np.nan
        return output.astype(np.float32)


def _both(stem: str) -> tuple[str, str]:
    return f"{stem}Left", f"{stem}Right"


# AU -> the blendshapes whose mean gives it (see the module doc)
BLENDSHAPE_AUS: dict[str, tuple[str, ...]] = {
    "AU01": ("browInnerUp",),
    "AU02": _both("browOuterUp"),
    "AU04": _both("browDown"),
    "AU05": _both("eyeWide"),
    "AU06": _both("cheekSquint"),
    "AU07": _both("eyeSquint"),
    "AU09": _both("noseSneer"),
    "AU10": _both("mouthUpperUp"),
    "AU12": _both("mouthSmile"),
    "AU14": _both("mouthDimple"),
    "AU15": _both("mouthFrown"),
    "AU17": ("mouthShrugLower",),
    "AU20": _both("mouthStretch"),
    "AU25": ("jawOpen", *_both("mouthLowerDown")),
    "AU26": ("jawOpen",),
    "AU45": _both("eyeBlink"),
}


class BlendshapeAUBackend(AUBackend):
    """AUs from MediaPipe's trained blendshape model (Tasks face landmarker): 5 x the mean of each AU's
    blendshapes (table in the module doc)."""

    name = "blendshapes"
    supported_aus = tuple(BLENDSHAPE_AUS)

    def __init__(self, au_names: Sequence[str]):
        super().__init__(au_names)
        self._columns = [[BLENDSHAPE_NAMES.index(shape) for shape in BLENDSHAPE_AUS[name]] for name in self.au_names]

    def intensities(self, scores: np.ndarray) -> np.ndarray:
        """Blendshape scores [T, 52] (NaN rows: no face) -> AU intensities [T, n_au] on the 0..5 scale."""
        scores = np.asarray(scores, np.float64).reshape(-1, len(BLENDSHAPE_NAMES))
        output = np.stack([scores[:, columns].mean(axis=1) for columns in self._columns], axis=1) if self._columns \
            else np.zeros((len(scores), 0))
        return np.clip(5.0 * output, 0.0, 5.0).astype(np.float32)


@dataclass
class OpenFaceTable:
    """The AU intensity columns of an OpenFace 2.x FeatureExtraction CSV."""

    path: str
    frames: np.ndarray  # int [N] OpenFace frame numbers (1-based in OpenFace output)
    timestamps: np.ndarray  # float [N] seconds
    success: np.ndarray  # bool [N]
    confidence: np.ndarray  # float [N]
    values: np.ndarray  # float32 [N, n_au]
    au_names: tuple[str, ...]


def read_openface_csv(path, au_names: Sequence[str] = OPENFACE_AU_NAMES, min_confidence: float = 0.0) -> OpenFaceTable:
    """Reads an OpenFace 2.x CSV (comma + space separated). Rows with ``success == 0`` or a confidence below
    `min_confidence` get NaN values. Raises :class:`EmiInputError` when the file or a needed column is missing."""
    import pandas as pd

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise EmiInputError(path, "OpenFace CSV not found.", "Run OpenFace's FeatureExtraction on the video "
                            "(`FeatureExtraction -f VIDEO -aus`) and pass the CSV with `au_files=`, or put it next to "
                            "the video with the same name and a .csv extension.")
    try:
        table = pd.read_csv(path, skipinitialspace=True)
    except Exception as error:  # pandas raises several types for malformed text
        raise EmiInputError(path, f"could not be read as a CSV ({error}).", "Pass an OpenFace FeatureExtraction CSV.")
    table.columns = [str(c).strip() for c in table.columns]
    columns = [f"{name}_r" for name in au_names]
    missing = [c for c in columns + ["timestamp"] if c not in table.columns]
    if missing:
        raise EmiInputError(path, f"is not an OpenFace AU table: missing columns {missing}.",
                            "Run FeatureExtraction with -aus (OpenFace 2.x), or choose au_names that the CSV has.")
    values = table[columns].to_numpy(dtype=np.float32)
    success = table["success"].to_numpy() > 0 if "success" in table.columns else np.ones(len(table), bool)
    confidence = (table["confidence"].to_numpy(dtype=np.float64) if "confidence" in table.columns
                  else np.ones(len(table)))
    bad = ~success | (confidence < min_confidence)
    values[bad] = np.nan
    frames = (table["frame"].to_numpy(dtype=np.int64) if "frame" in table.columns
              else np.arange(1, len(table) + 1))
    return OpenFaceTable(path=path, frames=frames, timestamps=table["timestamp"].to_numpy(dtype=np.float64),
                         success=success, confidence=confidence, values=values, au_names=tuple(au_names))


def match_openface(table: OpenFaceTable, timestamps: np.ndarray, source_indices: np.ndarray | None = None,
                   match: str = "timestamp", tolerance: float | None = None) -> np.ndarray:
    """AU values [T, n_au] for frames at `timestamps` (seconds): the nearest CSV row in time, when within
    `tolerance` (default: half the CSV's median frame interval, at least 20 ms); NaN otherwise.

    ``match="frame"`` uses OpenFace's 1-based ``frame`` column against ``source_indices + 1`` (the decoded
    source-frame index), for CSVs whose timestamps are not the video's (e.g. from an image sequence).
    """
    timestamps = np.asarray(timestamps, dtype=np.float64)
    output = np.full((len(timestamps), table.values.shape[1]), np.nan, np.float32)
    if len(table.timestamps) == 0 or len(timestamps) == 0:
        return output
    if match == "frame":
        if source_indices is None:
            raise ValueError("match='frame' needs the source frame indices")
        lookup = {int(f): i for i, f in enumerate(table.frames)}
        for k, index in enumerate(np.asarray(source_indices)):
            row = lookup.get(int(index) + 1)
            if row is not None:
                output[k] = table.values[row]
        return output
    if match != "timestamp":
        raise EmiUsageError(f"openface match must be 'timestamp' or 'frame', got {match!r}")
    order = np.argsort(table.timestamps, kind="stable")
    times = table.timestamps[order]
    if tolerance is None:
        steps = np.diff(times)
        steps = steps[steps > 0]
        tolerance = max(0.02, 0.5 * float(np.median(steps))) if len(steps) else 0.02
    nearest = order[nearest_index(times, timestamps)]
    close = np.abs(table.timestamps[nearest] - timestamps) <= tolerance + 1e-9
    output[close] = table.values[nearest[close]]
    return output


class OpenFaceAUBackend(AUBackend):
    """Reads OpenFace 2.x CSVs (one per clip) and matches their rows to frames."""

    name = "openface"
    supported_aus = OPENFACE_AU_NAMES

    def __init__(self, au_names: Sequence[str], match: str = "timestamp", min_confidence: float = 0.0,
                 csv_dir: str | None = None):
        super().__init__(au_names)
        if match not in ("timestamp", "frame"):
            raise EmiUsageError(f"openface match must be 'timestamp' or 'frame', got {match!r}")
        self.match = match
        self.min_confidence = float(min_confidence)
        self.csv_dir = csv_dir

    def find_csv(self, video_path: str | None, au_file: str | None = None) -> str:
        """The CSV for a clip: `au_file` if given, else ``csv_dir/<video stem>.csv``, else ``<video>.csv``."""
        if au_file is not None:
            return os.fspath(au_file)
        candidates = []
        if video_path is not None:
            stem = Path(video_path).stem
            if self.csv_dir:
                candidates.append(os.path.join(self.csv_dir, stem + ".csv"))
            candidates.append(str(Path(video_path).with_suffix(".csv")))
        for candidate in candidates:
            if os.path.isfile(candidate):
                return candidate
        raise EmiInputError(video_path, "au_backend='openface' needs an OpenFace CSV for this clip and none was "
                            f"found (looked for {candidates}).",
                            "Pass `au_files=` (one CSV per video), set `openface_dir=` to the folder of "
                            "FeatureExtraction outputs, or use au_backend='mediapipe'.")

    def values(self, csv_path: str, timestamps: np.ndarray, source_indices: np.ndarray) -> np.ndarray:
        table = read_openface_csv(csv_path, self.au_names, self.min_confidence)
        return np.clip(match_openface(table, timestamps, source_indices, self.match), 0.0, 5.0)


class PyFaceAUBackend(AUBackend):
    """Optional: pyfaceau (a Python port of OpenFace 2.2's AU models) on each frame. Experimental: it runs its
    own face detection and landmarks per frame (slow) and needs its model files installed separately."""

    name = "pyfaceau"
    supported_aus = OPENFACE_AU_NAMES

    def __init__(self, au_names: Sequence[str]):
        super().__init__(au_names)
        try:
            import pyfaceau
        except ImportError as error:
            raise EmiDependencyError(
                "au_backend='pyfaceau' needs the optional package pyfaceau: `pip install pyfaceau`, then download "
                "its OpenFace model files once (`pyfaceau-download-models`, academic licence). Or use "
                "au_backend='mediapipe' (no extra install) or 'openface' (OpenFace CSVs)."
            ) from error
        self._analyzer = pyfaceau.FaceAnalyzer()

    def values_for_frame(self, image: np.ndarray) -> np.ndarray:
        result = self._analyzer.analyze(image[:, :, ::-1].copy())  # OpenFace ports expect BGR
        intensities = getattr(result, "au_intensities", None)
        output = np.full(len(self.au_names), np.nan, np.float32)
        if intensities is None:
            return output
        if isinstance(intensities, dict):
            for k, name in enumerate(self.au_names):
                value = intensities.get(name, intensities.get(f"{name}_r"))
                if value is not None:
                    output[k] = float(value)
        else:
            array = np.asarray(intensities, np.float32).reshape(-1)
            if len(array) == len(OPENFACE_AU_NAMES):
                output = array[[OPENFACE_AU_NAMES.index(name) for name in self.au_names]]
        return np.clip(output, 0.0, 5.0)


AU_BACKENDS = {"mediapipe": MediaPipeAUBackend, "blendshapes": BlendshapeAUBackend, "openface": OpenFaceAUBackend,
               "pyfaceau": PyFaceAUBackend}


def build_au_backend(name: str | None, au_names: Sequence[str], **options) -> AUBackend | None:
    """``"mediapipe"``, ``"blendshapes"``, ``"openface"``, ``"pyfaceau"`` or ``None`` (AU channel all zeros)."""
    if name is None:
        return None
    if name not in AU_BACKENDS:
        raise EmiUsageError(f"au_backend must be one of {sorted(AU_BACKENDS)} or None, got {name!r}")
    backend_class = AU_BACKENDS[name]
    import inspect

    accepted = inspect.signature(backend_class.__init__).parameters
    return backend_class(au_names, **{k: v for k, v in options.items() if k in accepted})
