"""Media pipeline of emi-hf: PyAV decoding, face detection / tracking / alignment, Action Units, audio.

Most users go through :class:`emi_hf.EmiProcessor`; :class:`ClipPipeline` gives per-clip numpy results
(:class:`ClipData`). What bad input raises and what is masked is documented in :mod:`emi_hf.media.errors`.
"""

from .alignment import ARCFACE_TEMPLATE_112, align_face, estimate_similarity, mesh_five_points, template_points
from .au import (
    AU_BACKENDS,
    MEDIAPIPE_AU_DEFINITIONS,
    OPENFACE_AU_NAMES,
    AUBackend,
    MediaPipeAUBackend,
    OpenFaceAUBackend,
    PyFaceAUBackend,
    build_au_backend,
    check_au_names,
    fill_missing,
    match_openface,
    read_openface_csv,
)
from .decoding import MediaInfo, SourceFrame, decode_audio, iter_video_frames, load_audio, peak_normalize, probe_media
from .errors import EmiFileNotFoundError, EmiInputError
from .faces import (
    FACE_DETECTORS,
    SUBJECT_POLICIES,
    Face,
    FaceDetector,
    FaceMeshLandmarker,
    FrameFace,
    MediaPipeDetector,
    MTCNNDetector,
    SubjectTracker,
    build_face_detector,
)
from .cache import CACHE_VERSION, ClipData, clip_cache_key, default_cache_dir, file_sha256
from .embedding import EmbeddingWorker, embed_kept_crops
from .logs import native_stderr_silenced, quiet_native_logs, quiet_third_party_logs
from .pipeline import ClipPipeline, VisualTrack
from .resampling import nearest_frames, nearest_index
from .settings import ClipSettings

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "AU_BACKENDS",
    "AUBackend",
    "CACHE_VERSION",
    "ClipData",
    "ClipPipeline",
    "ClipSettings",
    "EmbeddingWorker",
    "EmiFileNotFoundError",
    "EmiInputError",
    "FACE_DETECTORS",
    "Face",
    "FaceDetector",
    "FaceMeshLandmarker",
    "FrameFace",
    "MEDIAPIPE_AU_DEFINITIONS",
    "MTCNNDetector",
    "MediaInfo",
    "MediaPipeAUBackend",
    "MediaPipeDetector",
    "OPENFACE_AU_NAMES",
    "OpenFaceAUBackend",
    "PyFaceAUBackend",
    "SUBJECT_POLICIES",
    "SourceFrame",
    "SubjectTracker",
    "align_face",
    "build_au_backend",
    "build_face_detector",
    "clip_cache_key",
    "check_au_names",
    "decode_audio",
    "default_cache_dir",
    "embed_kept_crops",
    "estimate_similarity",
    "file_sha256",
    "fill_missing",
    "iter_video_frames",
    "load_audio",
    "match_openface",
    "mesh_five_points",
    "native_stderr_silenced",
    "nearest_frames",
    "nearest_index",
    "peak_normalize",
    "probe_media",
    "quiet_native_logs",
    "quiet_third_party_logs",
    "read_openface_csv",
    "template_points",
    "VisualTrack",
]
