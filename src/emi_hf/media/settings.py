"""The media settings of a clip: one frozen dataclass that owns their names, defaults, types, validation and
serialisation.

:class:`ClipSettings` is what :class:`~emi_hf.media.ClipPipeline` runs with and what the clip cache is keyed on;
:class:`emi_hf.EmiProcessor` is a facade over it (its keywords are these fields, and ``processor_config.json``
stores :meth:`ClipSettings.to_dict`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..modalities import DEFAULT_AU_NAMES
from ..errors import EmiUsageError
from .alignment import FACE_ALIGNMENTS
from .faces import FACE_DETECTORS, SUBJECT_POLICIES
from .mediapipe_tasks import MEDIAPIPE_BACKENDS, resolve_mediapipe_backend

__all__ = ["ClipSettings"]

_CONVERTERS = {"float": float, "int": int, "bool": bool}


@dataclass(frozen=True)
class ClipSettings:
    """Everything that changes what a clip turns into (plus ``chunk_size`` and ``use_cache``, which do not).

    Values are converted to the annotated type (``target_fps=25`` is stored as ``25.0``) and checked when the
    settings are made.

    Args:
        target_fps (`float` or `None`, defaults to 30): frames are resampled to this rate (nearest frame, real
            timestamps kept); `None` keeps every source frame.
        face_detector (`str` or `None`, defaults to `"mtcnn"`): `"mtcnn"` (the paper's), `"mediapipe"` (BlazeFace,
            faster) or `None` when the inputs are already face crops (every frame then counts as a face and is
            only resized to `face_size`).
        detect_every (`int`, defaults to 10): run the detector on every k-th frame; the face mesh follows the
            subject in between (and the detector runs on every frame while no face is tracked).
        detect_max_side (`int`, *optional*): frames are downscaled to this long side for detection
            (default: 320 for MTCNN, 640 for MediaPipe).
        min_face_score (`float`, *optional*): detector score threshold (default: 0.9 MTCNN, 0.5 MediaPipe).
        subject (`str`, defaults to `"tracked"`): which face with several: `"tracked"`, `"largest"`, `"central"`
            (see `emi_hf.media.faces`).
        face_size (`int`, defaults to 112): crop size.
        face_alignment (`str`, defaults to `"arcface"`): `"arcface"` (5-point similarity onto the ArcFace template)
            or `"ffhq"` (the FFHQ quad from eyes and mouth, a looser crop; see `emi_hf.media.alignment`).
        mesh_refine (`bool`, defaults to `True`): the face mesh's refined eye / lip model (478 points).
        mediapipe_backend (`str`, defaults to `"auto"`): which MediaPipe graphs give the face mesh (and the
            `mediapipe` detector): `"solutions"` (the legacy graphs of mediapipe 0.10.14, Python 3.10-3.12, models
            inside the wheel), `"tasks"` (the Tasks API's face landmarker, any mediapipe; its model file is found
            or downloaded once, see `emi_hf.media.mediapipe_tasks`) or `"auto"` (the legacy graphs where the
            installed mediapipe has them, else the Tasks API).
        au_backend (`str` or `None`, defaults to `"mediapipe"`): `"mediapipe"` (geometry of the face mesh),
            `"blendshapes"` (the scores of MediaPipe's trained blendshape model, Tasks API), `"openface"`
            (OpenFace 2.x CSVs: `au_files=` or `<video>.csv`), `"pyfaceau"` (optional package) or `None` (AU
            channel all zeros).
        au_names (`tuple[str]`): the AUs, in order; must match the model config's `au_names`.
        au_neutral_baseline (`bool`, defaults to `False`): subtract a per-clip neutral (low percentile) from the
            `mediapipe` AU geometry, as OpenFace's person-specific normalisation.
        au_baseline_percentile (`float`, defaults to 10): that percentile.
        openface_match (`str`, defaults to `"timestamp"`): match OpenFace rows by `"timestamp"` or `"frame"`.
        sampling_rate (`int`, defaults to 16000): audio rate; the processor takes it from its feature extractor,
            so it is not part of :meth:`to_dict`.
        audio_peak_db (`float` or `None`, defaults to -3.0): peak normalisation of the waveform (the paper's).
        max_frames / max_duration (*optional*): process at most this many frames / seconds of each clip.
        chunk_size (`int`, defaults to 32): frames handled together (batching; memory holds about twice this many
            decoded frames; results do not depend on it).
        use_cache (`bool`, defaults to `True`): re-use results of files processed before with the same settings
            (the processor's default for ``process_clip``; results do not depend on it).
    """

    target_fps: float | None = 30.0
    face_detector: str | None = "mtcnn"
    detect_every: int = 10
    detect_max_side: int | None = None  # None: the detector's default (mtcnn 320 px, mediapipe 640 px)
    min_face_score: float | None = None  # None: the detector's default (mtcnn 0.9, mediapipe 0.5)
    subject: str = "tracked"
    face_size: int = 112
    face_alignment: str = "arcface"
    mesh_refine: bool = True
    mediapipe_backend: str = "auto"
    au_backend: str | None = "mediapipe"
    au_names: tuple[str, ...] = tuple(DEFAULT_AU_NAMES)
    au_neutral_baseline: bool = False
    au_baseline_percentile: float = 10.0
    openface_match: str = "timestamp"
    sampling_rate: int = 16000
    audio_peak_db: float | None = -3.0
    max_frames: int | None = None
    max_duration: float | None = None
    chunk_size: int = 32  # does not change results
    use_cache: bool = True  # does not change results

    # fields that are not stored by to_dict() (the processor's feature extractor owns the audio rate)
    NOT_SAVED = ("sampling_rate",)
    # fields that do not change what a clip turns into (left out of the cache key)
    NOT_IN_CACHE_KEY = ("chunk_size", "use_cache")

    def __post_init__(self):
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            converter = _CONVERTERS.get(item.type.split("|")[0].strip())
            if converter is not None and value is not None:
                object.__setattr__(self, item.name, converter(value))
        object.__setattr__(self, "au_names", tuple(self.au_names))
        self._validate()

    def _validate(self) -> None:
        if self.face_detector is not None and self.face_detector not in FACE_DETECTORS:
            raise EmiUsageError(f"face_detector must be one of {sorted(FACE_DETECTORS)} or None, "
                                f"got {self.face_detector!r}")
        if self.face_detector is not None and self.subject not in SUBJECT_POLICIES:
            raise EmiUsageError(f"subject must be one of {SUBJECT_POLICIES}, got {self.subject!r}")
        if self.face_alignment not in FACE_ALIGNMENTS:
            raise EmiUsageError(f"face_alignment must be one of {FACE_ALIGNMENTS}, got {self.face_alignment!r}")
        if self.mediapipe_backend not in MEDIAPIPE_BACKENDS:
            raise EmiUsageError(f"mediapipe_backend must be one of {MEDIAPIPE_BACKENDS}, got {self.mediapipe_backend!r}")
        if self.au_backend == "blendshapes" and self.mediapipe_backend == "solutions":
            raise EmiUsageError("au_backend='blendshapes' needs MediaPipe's Tasks face landmarker (the legacy "
                             "'solutions' face mesh gives no blendshapes): use mediapipe_backend='auto' or 'tasks'.")
        if self.detect_every < 1:
            raise EmiUsageError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.chunk_size < 1:
            raise EmiUsageError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.max_frames is not None and self.max_frames < 1:
            raise EmiUsageError(f"max_frames must be >= 1 or None, got {self.max_frames}")
        if self.max_duration is not None and self.max_duration <= 0:
            raise EmiUsageError(f"max_duration must be > 0 or None, got {self.max_duration}")

    @classmethod
    def saved_fields(cls) -> tuple[str, ...]:
        """The names :meth:`to_dict` writes (the processor's media keywords), in declaration order."""
        return tuple(item.name for item in dataclasses.fields(cls) if item.name not in cls.NOT_SAVED)

    def to_dict(self) -> dict[str, Any]:
        """The settings as ``processor_config.json`` stores them (JSON types; ``ClipSettings(**d)`` reads it)."""
        output = {name: getattr(self, name) for name in self.saved_fields()}
        output["au_names"] = list(self.au_names)
        return output

    def result_dict(self) -> dict[str, Any]:
        """The settings that change the result (what the clip cache key is made of). Of ``mediapipe_backend`` only
        the graphs it picks here count, and only when they are the Tasks API's: entries made with the legacy
        graphs keep the keys they had before the setting existed; so does ``face_alignment`` at its default."""
        output = {k: v for k, v in dataclasses.asdict(self).items()
                  if k not in self.NOT_IN_CACHE_KEY and k != "mediapipe_backend"}
        if self.face_alignment == "arcface":
            output.pop("face_alignment")
        output["au_names"] = list(self.au_names)
        if resolve_mediapipe_backend(self.mediapipe_backend, self.au_backend) == "tasks":
            output["mediapipe_backend"] = "tasks"
        return output

    def mediapipe_graphs(self) -> str:
        """``"solutions"`` or ``"tasks"``: the MediaPipe graphs these settings run with the installed mediapipe."""
        return resolve_mediapipe_backend(self.mediapipe_backend, self.au_backend)
