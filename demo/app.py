"""Gradio Space for emi-hf: six Emotional Mimicry Intensities of a video clip, from the face and the voice.

Run it locally after `make quickstart` (which writes the checkpoint this app loads by default):

    python demo/app.py                       # http://127.0.0.1:7860 (serves on 0.0.0.0:7860)

Environment variables (all optional):

    EMI_HF_MODEL          checkpoint folder or Hub id; default `quickstart/runs/fusion` under the repository root.
                          A relative folder is looked up from the working directory, then from the repository root.
    EMI_HF_EXAMPLES_DIR   folder with example clips: a Hume-Vidmimic2-style folder (valid_split.csv + videos/) or a
                          folder of videos; default `quickstart/data` under the repository root.
    EMI_HF_TRANSCRIPTS    a model with a text part: transcripts of the clips (Filename,text CSV, JSON / JSONL) to use
                          instead of its ASR; default `quickstart/data/transcripts.csv` when there (synthetic). A
                          clip without one is scored without the text model, and the page says so.
    EMI_HF_ASR_MODEL, EMI_HF_ASR_BACKEND  a model with a text part: the speech recognizer (Whisper id or folder;
                          transformers or faster-whisper) for uploads without a transcript and for the Live tab's
                          words; default the one the model's training transcripts came from.
    EMI_HF_MAX_FILE_MB    upload size cap in MB (default 50).
    EMI_HF_MAX_DURATION_S clip duration cap in seconds (default 60).
    EMI_HF_QUEUE_SIZE     requests that may wait in the queue (default 20).
    EMI_HF_CACHE_EXAMPLES results of the example clips cached: `lazy` (computed once, at the first click; the
                          default on a Space), `eager` (all at start-up) or `0` (the default elsewhere).
    EMI_HF_ALLOW_RANDOM_BACKBONES  1: run a model whose backbones are random or absent (the offline quickstart's);
                          without it such a model is refused and the page says why (its numbers mean nothing).
    EMI_HF_TEMP_MAX_AGE_S Gradio's temporary files (uploads, result images) older than this are deleted, checked as
                          often (default 600).
    GRADIO_SERVER_NAME, GRADIO_SERVER_PORT   where to serve (default 0.0.0.0:7860).

The model and its processor are loaded once, when the app is built; requests then run one at a time through Gradio's
queue (the face tracker of the processor keeps state per clip, and two CPU-bound requests in parallel would not be
faster), so several users at once all get their answer, in turn.

Memory stays flat under sustained load (measured by benchmarks/demo_memory.py): the face mesh's graphs come from a
process-wide pool (one per clip in progress, not one per Gradio worker thread); glibc gets at most
`MALLOC_ARENA_MAX` (default 2 here) heap arenas, so the many short-lived threads of a request (Gradio's worker, the
decoder, the face embedder) do not each leave an arena of freed memory behind (`limit_heap_arenas`); the freed
memory is handed back after each request (`release_memory`: malloc_trim); Gradio's temporary files are deleted
after EMI_HF_TEMP_MAX_AGE_S.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import html
import math
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

# Before gradio is imported: no usage analytics, no version check, no Hub telemetry (the app must run offline).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from emi_hf.data.layout import READABLE_VIDEO_EXTENSIONS, DataLayoutError, load_hume_vidmimic2  # noqa: E402
from emi_hf.inference import MODALITIES, ClipPrediction  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # live.py (the Live tab), charts.py beside this file
from charts import (  # noqa: E402,F401  (the charts, re-exported)
    EMOTION_COLORS, MODALITY_COLORS, MODALITY_LABELS, bar_chart, summary_markdown, timeline_chart)
from live import build_live_tab  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "quickstart/runs/fusion"
DEFAULT_EXAMPLES_DIR = "quickstart/data"
DEFAULT_MAX_FILE_MB = 50.0
DEFAULT_MAX_DURATION_S = 60.0
DEFAULT_TEMP_MAX_AGE_S = 600.0
NUM_EXAMPLES = 4
NUM_FACE_CROPS = 8
AUDIO_BIN_S = 0.1  # the audio timeline is shown in bins of this many seconds
API_NAME = "predict"


CSS = """
#emi-title h1 { margin-bottom: 0.2em; }
#emi-status { border-left: 4px solid #d97706; padding-left: 0.8em; }
#emi-limits { font-size: 0.85em; opacity: 0.8; }
"""


# ----------------------------------------------------------------------------------------------------------------------
# Configuration: where the model and the examples are
# ----------------------------------------------------------------------------------------------------------------------


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def resolve_model_path(model_path: str | os.PathLike | None = None) -> tuple[str, bool]:
    """
    (model id or folder, whether it is a local folder). `model_path`, else EMI_HF_MODEL, else the quickstart
    checkpoint. A relative folder is looked up from the working directory, then from the repository root; a value
    that is neither an existing folder nor shaped like a Hub id (`org/name`) is returned as the repository-root path.
    """
    value = str(model_path or os.environ.get("EMI_HF_MODEL") or DEFAULT_MODEL)
    candidate = Path(value).expanduser()
    for folder in ([candidate] if candidate.is_absolute() else [Path.cwd() / candidate, REPO_ROOT / candidate]):
        if folder.is_dir():
            return str(folder.resolve()), True
    looks_like_hub_id = (
        not candidate.is_absolute() and value.count("/") == 1 and not value.startswith((".", "/", "~"))
        and value != DEFAULT_MODEL
    )
    if looks_like_hub_id:
        return value, False
    return str(candidate if candidate.is_absolute() else REPO_ROOT / candidate), True


def find_examples(examples_dir: str | os.PathLike | None = None, limit: int = NUM_EXAMPLES) -> list[str]:
    """
    The first `limit` validation clips of a Hume-Vidmimic2-style folder (valid_split.csv + videos/), else its first
    videos; `examples_dir`, else EMI_HF_EXAMPLES_DIR, else the quickstart's synthetic set. [] when there is none.
    """
    value = examples_dir or os.environ.get("EMI_HF_EXAMPLES_DIR") or DEFAULT_EXAMPLES_DIR
    folder = Path(value).expanduser()
    if not folder.is_absolute() and not folder.is_dir():
        folder = REPO_ROOT / folder
    if not folder.is_dir():
        return []
    videos_dir = folder / "videos" if (folder / "videos").is_dir() else folder
    try:
        records = load_hume_vidmimic2(folder, splits=("validation",), video_dir=videos_dir, label_names=(),
                                      extensions=READABLE_VIDEO_EXTENSIONS, require_videos=False)["validation"]
        paths = [record.path for record in records if record.path is not None]
    except DataLayoutError:  # no (readable) validation split: the folder's own videos
        paths = []
    if not paths:
        paths = sorted(p for p in videos_dir.iterdir() if p.suffix.lower() in READABLE_VIDEO_EXTENSIONS and p.is_file())
    return [str(p) for p in paths[:limit]]


# ----------------------------------------------------------------------------------------------------------------------
# Input checks: video only, size and duration caps
# ----------------------------------------------------------------------------------------------------------------------


def _glibc_function(name: str):
    """A function of the C library when it is glibc's, else None (other platforms: the calls below do nothing)."""
    library = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(library), name, None) if library else None
    except OSError:
        return None


def limit_heap_arenas(default: int = 2) -> None:
    """At most `MALLOC_ARENA_MAX` heap arenas (default `default`): glibc otherwise makes up to 8 per core, one per
    thread that allocates at the same time as another, and keeps each one's freed memory. A value the environment
    sets is glibc's own (read at start-up) and left alone. Measured (benchmarks/demo_memory.py, see changes/): with
    2, the server is flat from the first requests on."""
    mallopt = _glibc_function("mallopt")
    if mallopt is not None and not os.environ.get("MALLOC_ARENA_MAX"):
        mallopt(-8, int(default))  # M_ARENA_MAX


def release_memory() -> None:
    """Hands the memory a request freed back to the system (garbage collection, then glibc's malloc_trim)."""
    gc.collect()
    trim = _glibc_function("malloc_trim")
    if trim is not None:
        trim(0)


def refuse(message: str) -> gr.Error:
    """A gr.Error shown to the user as is (no traceback in the server log: refusing bad input is normal)."""
    return gr.Error(html.escape(message, quote=False), print_exception=False)


def _container_duration(path: str) -> float | None:
    """Duration from the last video packet's timestamp: for files (e.g. webcam WebM) whose header has none."""
    import av

    last = None
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.pts is not None and stream.time_base is not None:
                end = float((packet.pts + (packet.duration or 0)) * stream.time_base)
                last = end if last is None else max(last, end)
    if last is None:
        return None
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    return max(0.0, last - start)


def check_video(path: str | None, max_file_mb: float, max_duration_s: float) -> dict:
    """Refuses (gr.Error) what the demo cannot or should not process; returns what the header says of the video."""
    if not path:
        raise refuse("No video yet: upload a video file or record one with the webcam, then press Analyse.")
    name = Path(path).name
    extension = Path(path).suffix.lower()
    if extension not in READABLE_VIDEO_EXTENSIONS:
        raise refuse(f"'{name}' is not a video file: this demo takes videos "
                       f"({', '.join(e.lstrip('.') for e in READABLE_VIDEO_EXTENSIONS)}).")
    size_mb = os.path.getsize(path) / 1e6
    if size_mb > max_file_mb:
        raise refuse(f"'{name}' is {size_mb:.1f} MB; this demo takes videos up to {max_file_mb:g} MB. Upload a "
                       "shorter or smaller clip (e.g. ffmpeg -i IN -t 20 -vf scale=640:-2 OUT.mp4).")
    from emi_hf.media.decoding import probe_media
    from emi_hf.media.errors import EmiInputError

    try:
        info = probe_media(path)
    except EmiInputError as error:
        raise refuse(f"'{name}' could not be read as a video: {error.problem} Upload an mp4, mov or webm "
                       "video.") from error
    if not info.has_video:
        raise refuse(f"'{name}' has no video stream (an audio-only file?): this demo needs a video of a face.")
    duration = info.duration
    if not duration:
        try:
            duration = _container_duration(path)
        except Exception:  # noqa: BLE001 - an unreadable file is reported by the processor below
            duration = None
    if duration is not None and duration > max_duration_s:
        raise refuse(f"'{name}' lasts {duration:.1f} s; this demo takes clips up to {max_duration_s:g} s. "
                       "Trim it (e.g. ffmpeg -i IN -t 20 OUT.mp4) and upload it again.")
    return {"duration": duration, "width": info.width, "height": info.height, "fps": info.fps,
            "has_audio": info.has_audio}


# ----------------------------------------------------------------------------------------------------------------------
# The analysis: processor once per clip, model once, then plots
# ----------------------------------------------------------------------------------------------------------------------


def _none_if_nan(values) -> list[float | None]:
    return [None if (v is None or math.isnan(v)) else float(v) for v in values]


@dataclass
class Analysis:
    """One clip's prediction (`emi_hf.inference.ClipPrediction`) and what the demo derives from it to show it."""

    prediction: ClipPrediction
    has_audio_track: bool  # the container declares an audio stream (it may still be unusable, e.g. silent)
    duration: float | None  # the processor's, else the container header's
    audio_times: list[float] = field(default_factory=list)
    audio_frame_intensities: list[list[float | None]] = field(default_factory=list)  # [bins][6], AUDIO_BIN_S each
    face_crops: list[tuple[np.ndarray, str]] = field(default_factory=list)

    @classmethod
    def of(cls, prediction: ClipPrediction, video_info: dict) -> Analysis:
        """From a prediction (made with keep_crops=True) and what `check_video` read from the header."""
        duration = prediction.duration if prediction.duration is not None else video_info.get("duration")
        audio_times, audio_rows = audio_timeline(prediction, AUDIO_BIN_S)
        crops = face_crops(prediction.face_crops, prediction.frame_mask, prediction.timestamps, NUM_FACE_CROPS)
        return cls(prediction, bool(video_info.get("has_audio")), duration, audio_times, audio_rows, crops)

    @property
    def emotions(self) -> list[str]:
        return self.prediction.label_names

    @property
    def modalities(self) -> dict[str, list[float | None] | None]:
        """Per modality ("visual", "audio", "fused"): six values (None where missing), or None if the model has none."""
        found = self.prediction.modality_intensities
        return {m: _none_if_nan(found[m].values()) if m in found else None for m in MODALITIES}

    @property
    def frame_intensities(self) -> list[list[float | None]]:
        """Visual timeline [frames][6], None where no face; [] for an audio model."""
        return self.prediction.frame_intensities or []

    @property
    def num_frames(self) -> int:
        return len(self.prediction.timestamps)

    @property
    def main(self) -> tuple[str, list[float | None]]:
        modalities = self.modalities
        for name in ("fused", "visual", "audio", "text"):
            if modalities.get(name) is not None and any(v is not None for v in modalities[name]):
                return name, modalities[name]
        return "none", [None] * len(self.emotions)

    def missing(self) -> list[str]:
        notes = []
        face_fraction = self.prediction.face_fraction  # None: the model has no visual part (faces not looked for)
        if self.num_frames == 0 and face_fraction is not None:
            notes.append("no video frames could be decoded")
        elif face_fraction is None:
            pass
        elif face_fraction <= 0.0:
            notes.append("no face in any frame (100% of frames): the visual model was skipped")
        elif face_fraction < 1.0:
            notes.append(f"no face in {100 * (1 - face_fraction):.0f}% of frames (those frames are masked)")
        if self.prediction.audio_present is False:  # None: the model has no audio part (audio not decoded)
            reasons = [w.split(";")[0] for w in self.prediction.warnings if "audio" in w]
            if self.has_audio_track:
                reason = f" ({reasons[0]})" if reasons else " (the audio track is silent or unreadable)"
                notes.append(f"no usable audio{reason}: the audio model was skipped")
            else:
                notes.append("no audio: the clip has no audio track, so the audio model was skipped")
        if self.prediction.transcript is not None and not self.prediction.transcript.strip():
            notes.append("no transcript (no speech, or none available for this clip): the text model was skipped")
        return notes

    def to_json(self) -> dict:
        kind, values = self.main
        prediction = self.prediction
        return {
            "emotions": self.emotions,
            "intensities": dict(zip(self.emotions, values)),
            "intensities_from": kind,
            **{name: (dict(zip(self.emotions, v)) if v is not None else None) for name, v in self.modalities.items()},
            "face_fraction": prediction.face_fraction,
            "num_frames": self.num_frames,
            "frames_with_face": None if prediction.face_fraction is None else
            int(round(prediction.face_fraction * self.num_frames)),
            "audio_present": prediction.audio_present,
            "transcript": prediction.transcript,
            "has_audio_track": self.has_audio_track,
            "duration_s": self.duration,
            "fps": prediction.fps,
            "missing": self.missing(),
            "warnings": prediction.warnings,
            "timeline": {"timestamps": prediction.timestamps, "frame_intensities": self.frame_intensities,
                         "audio_times": self.audio_times, "audio_frame_intensities": self.audio_frame_intensities},
            "timing_s": {"preprocess": round(prediction.timing["preprocess_s"], 3),
                         "model": round(prediction.timing["compute_s"], 3)},
        }


def audio_timeline(prediction: ClipPrediction, bin_s: float) -> tuple[list[float], list[list[float | None]]]:
    """(bin centres in seconds, [bins][6] mean intensities) of the voice timeline; ([], []) without audio.

    Audio frames (e.g. 50 per second) evenly cover the waveform, which starts at `prediction.audio_start`; they are
    averaged over bins of `bin_s` seconds for a readable timeline.
    """
    if prediction.audio_frame_intensities is None or not prediction.audio_present:
        return [], []
    import torch  # torch float32 means, as the model computes them (numpy's differ in the last bits)

    rows = torch.tensor([row for row in prediction.audio_frame_intensities if None not in row], dtype=torch.float32)
    if not len(rows):
        return [], []
    seconds = prediction.audio_seconds
    bins = max(1, min(len(rows), round(seconds / bin_s)))
    edges = np.linspace(0, len(rows), bins + 1).round().astype(int)
    start = float(prediction.audio_start or 0.0)
    values = [_none_if_nan(rows[a:b].mean(0).tolist()) for a, b in zip(edges[:-1], edges[1:])]
    times = [start + seconds * (a + b) / 2 / len(rows) for a, b in zip(edges[:-1], edges[1:])]
    return times, values


def face_crops(crops: np.ndarray, frame_mask: np.ndarray, timestamps: list[float],
               limit: int) -> list[tuple[np.ndarray, str]]:
    """Up to `limit` of the clip's aligned face crops (uint8 RGB), evenly spread over the frames with a face."""
    valid = np.flatnonzero(np.asarray(frame_mask) > 0).tolist()
    if not valid:
        return []
    count = min(limit, len(valid))
    picks = sorted({valid[round(k * (len(valid) - 1) / max(1, count - 1))] for k in range(count)})
    return [(np.ascontiguousarray(crops[i]), f"{timestamps[i]:.1f} s") for i in picks]


def _default_transcripts() -> str | None:
    """The quickstart's synthetic transcripts, for its example clips (when the quickstart has run)."""
    path = REPO_ROOT / "quickstart" / "data" / "transcripts.csv"
    return str(path) if path.is_file() else None


class EmiDemo:
    """Holds the model and processor (loaded once) and analyses one clip per call."""

    def __init__(self, model_path=None, max_file_mb: float = DEFAULT_MAX_FILE_MB,
                 max_duration_s: float = DEFAULT_MAX_DURATION_S, device: str | None = None, transcripts=None,
                 allow_random_backbones: bool | None = None):
        from emi_hf.provenance import RandomBackboneError, allowed_by_environment, passed_check

        self.max_file_mb = float(max_file_mb)
        self.max_duration_s = float(max_duration_s)
        self.model_id, self.is_local = resolve_model_path(model_path)
        self.model = self.processor = self.text_side = None
        self.load_error: str | None = None
        self.backbone_notes: list[str] = []  # random (allowed) or unknown backbones: shown on the page
        self._lock = threading.Lock()
        if self.is_local and not Path(self.model_id).is_dir():
            self.load_error = (
                f"No model found at `{self.model_id}`. Run `make quickstart` in the repository (it trains a model on "
                "synthetic data and writes this checkpoint), or set the environment variable `EMI_HF_MODEL` to a "
                "checkpoint folder or a Hub model id, then restart the app."
            )
            return
        try:
            from emi_hf.inference import TextSide, load_for_inference

            allow = allowed_by_environment() if allow_random_backbones is None else allow_random_backbones
            self.model, self.processor = load_for_inference(self.model_id, device=device,
                                                            allow_random_backbones=allow)
            self.backbone_notes = passed_check(self.model).notes
            # uploads: the model's ASR, or a transcripts file (None for a model without text)
            self.text_side = TextSide.for_model(
                self.model, transcripts=transcripts or os.environ.get("EMI_HF_TRANSCRIPTS") or _default_transcripts(),
                missing_ok=True, use_cache=False, asr_model=os.environ.get("EMI_HF_ASR_MODEL") or None,
                asr_backend=os.environ.get("EMI_HF_ASR_BACKEND") or None)
        except RandomBackboneError as error:
            self.model = None
            self.load_error = f"{error} Restart the app with `EMI_HF_ALLOW_RANDOM_BACKBONES=1` to run it anyway."
        except Exception as error:  # noqa: BLE001 - the app must start and say what went wrong
            self.load_error = (
                f"The model `{self.model_id}` could not be loaded ({type(error).__name__}: {error}). Run `make "
                "quickstart`, or set `EMI_HF_MODEL` to a checkpoint folder (or a Hub id, with network access), then "
                "restart the app."
            )

    @property
    def ready(self) -> bool:
        return self.model is not None

    @property
    def model_type(self) -> str | None:
        return self.model.config.model_type if self.ready else None

    def analyse(self, video_path: str | None) -> Analysis:
        if not self.ready:
            raise refuse((self.load_error or "No model loaded.").replace("`", "'"))
        info = check_video(video_path, self.max_file_mb, self.max_duration_s)
        from emi_hf.inference import predict_clips
        from emi_hf.media.errors import EmiInputError

        with self._lock:
            try:
                # use_cache=False: nothing derived from an upload is kept on disk. The face backbone runs in the
                # processor's background thread; the crops are kept for the gallery (clips are short here).
                (prediction,) = predict_clips(self.model, self.processor, [video_path], use_cache=False,
                                              keep_crops=True, text_side=self.text_side)
            except EmiInputError as error:
                raise refuse(f"'{Path(video_path).name}' could not be processed: {error.problem} "
                             f"{error.hint or ''}".strip()) from error
        return Analysis.of(prediction, info)


# ----------------------------------------------------------------------------------------------------------------------
# Figures and text
# ----------------------------------------------------------------------------------------------------------------------


INTRO = """# Emotional Mimicry Intensity
Upload a short video of a face (or record one with the webcam) to estimate, for the whole clip and frame by frame, the
intensity in [0, 1] of six emotions: Admiration, Amusement, Determination, Empathic Pain, Excitement and Joy, from the
face, from the voice, and fused. An intensity is a model's estimate of how the clip would be annotated, not a measure
of what the person feels."""


def _short(model_id: str) -> str:
    """A model folder relative to the repository when inside it, else its last two path parts (or the Hub id)."""
    path = Path(model_id)
    if not path.is_absolute():
        return model_id
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(Path(*path.parts[-2:]))


def examples_cache_mode() -> str | None:
    """How the examples' results are cached (`EMI_HF_CACHE_EXAMPLES`): `"lazy"` (each example computed once, at its
    first click; the default on a Space, where `SPACE_ID` is set), `"eager"` (all at start-up), or None (`0`, the
    default elsewhere: every click computes)."""
    value = os.environ.get("EMI_HF_CACHE_EXAMPLES", "lazy" if os.environ.get("SPACE_ID") else "0").strip().lower()
    if value in ("0", "false", "no", "off", ""):
        return None
    if value in ("1", "true", "yes", "on", "lazy"):
        return "lazy"
    if value == "eager":
        return "eager"
    raise ValueError(f"EMI_HF_CACHE_EXAMPLES={value!r}: use lazy, eager or 0.")


def build_demo(model_path: str | os.PathLike | None = None, examples_dir: str | os.PathLike | None = None,
               max_file_mb: float | None = None, max_duration_s: float | None = None,
               queue_size: int | None = None) -> gr.Blocks:
    """
    The app, with the model and processor loaded (once). Arguments default to the environment variables named in the
    module docstring. A missing model does not fail: the app starts and says how to get one.
    """
    max_file_mb = max_file_mb if max_file_mb is not None else _env_float("EMI_HF_MAX_FILE_MB", DEFAULT_MAX_FILE_MB)
    max_duration_s = (max_duration_s if max_duration_s is not None
                      else _env_float("EMI_HF_MAX_DURATION_S", DEFAULT_MAX_DURATION_S))
    queue_size = queue_size if queue_size is not None else int(_env_float("EMI_HF_QUEUE_SIZE", 20))
    limit_heap_arenas()  # before the model loads and the first request's threads start
    engine = EmiDemo(model_path, max_file_mb=max_file_mb, max_duration_s=max_duration_s)
    examples = find_examples(examples_dir)

    temp_age = int(_env_float("EMI_HF_TEMP_MAX_AGE_S", DEFAULT_TEMP_MAX_AGE_S))

    def predict(video):
        """Analyses a video: (bar chart, timeline, face crops, summary, raw numbers as JSON)."""
        try:
            analysis = engine.analyse(video)
            result = analysis.to_json()
            result["model"] = engine.model_id
            return (bar_chart(analysis), timeline_chart(analysis), analysis.face_crops, summary_markdown(analysis),
                    result)
        finally:
            release_memory()

    with gr.Blocks(title="Emotional Mimicry Intensity", analytics_enabled=False,
                   delete_cache=(temp_age, temp_age) if temp_age > 0 else None) as demo:
        gr.Markdown(INTRO, elem_id="emi-title")
        if not engine.ready:
            gr.Markdown(f"⚠️ **The app has no model.** {engine.load_error}", elem_id="emi-status")
        for note in engine.backbone_notes:
            gr.Markdown(f"⚠️ **Backbone:** {note}", elem_id="emi-backbone-warning")
        # the outputs, made first (rendered below in their places) so that the examples can name them
        bars = gr.Plot(label="Clip intensities: face, voice and fused", show_label=False, format="png",
                       elem_id="emi-bars", render=False)
        summary = gr.Markdown(label="Summary", value="_Results appear here._", elem_id="emi-summary", render=False)
        timeline = gr.Plot(label="Timeline: frame-level intensities", show_label=False, format="png",
                           elem_id="emi-timeline", render=False)
        faces = gr.Gallery(label="Detected faces (aligned crops)", columns=4, height=300, object_fit="contain",
                           format="png", elem_id="emi-faces", render=False)
        raw = gr.JSON(label="Result", elem_id="emi-json", render=False)
        with gr.Tab("Clip", elem_id="emi-tab-clip"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=320):
                    video = gr.Video(label="Video", sources=["upload", "webcam"], height=300, elem_id="emi-video")
                    button = gr.Button("Analyse", variant="primary", elem_id="emi-analyse")
                    if examples:
                        cache_mode = examples_cache_mode() if engine.ready else None
                        gr.Examples(examples=[[p] for p in examples], inputs=[video],
                                    label="Examples (synthetic clips)", examples_per_page=NUM_EXAMPLES,
                                    elem_id="emi-examples", fn=predict if cache_mode else None,
                                    outputs=[bars, timeline, faces, summary, raw] if cache_mode else None,
                                    cache_examples=bool(cache_mode), cache_mode=cache_mode or "eager")
                    gr.Markdown(
                        f"Limits: videos ({', '.join(e.lstrip('.') for e in READABLE_VIDEO_EXTENSIONS[:5])}, ...) "
                        f"up to {max_file_mb:g} MB and {max_duration_s:g} s. Requests run one at a time; others wait "
                        f"in the queue. Model: `{_short(engine.model_id)}`",
                        elem_id="emi-limits",
                    )
                with gr.Column(scale=3, min_width=420):
                    bars.render()
                    summary.render()
            with gr.Row(equal_height=False):
                with gr.Column(scale=3, min_width=420):
                    timeline.render()
                with gr.Column(scale=2, min_width=320):
                    faces.render()
            with gr.Accordion("Raw numbers (JSON, as the API returns them)", open=False):
                raw.render()
            button.click(predict, inputs=[video], outputs=[bars, timeline, faces, summary, raw], api_name=API_NAME,
                         concurrency_limit=1)
        with gr.Tab("Live", elem_id="emi-tab-live"):
            build_live_tab(engine)
    demo.queue(max_size=queue_size, default_concurrency_limit=1)
    demo.emi_engine = engine  # for tests and for `launch`
    return demo


def launch(demo: gr.Blocks, **kwargs):
    """`demo.launch` with the app's theme, CSS and upload cap (Gradio 6 takes theme and css in launch)."""
    engine = getattr(demo, "emi_engine", None)
    options = dict(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        css=CSS,
        theme=gr.themes.Soft(),
        footer_links=["api", "gradio"],
        max_file_size=f"{int(math.ceil(engine.max_file_mb))}mb" if engine else None,
    )
    options.update(kwargs)
    return demo.launch(**options)


if __name__ == "__main__":
    launch(build_demo())
