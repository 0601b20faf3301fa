"""Live EMI estimation: [`EmiStreamer`] (push frames and audio, one [`StreamUpdate`] per hop) and the sources the
command line plays through it (`emi-hf stream`: a video file, paced or not, or a local camera)."""

from .sources import camera_events, file_events, run_stream
from .streamer import EmiStreamer
from .update import StreamUpdate

__all__ = ["EmiStreamer", "StreamUpdate", "camera_events", "file_events", "run_stream"]
