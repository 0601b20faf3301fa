"""Live EMI estimation: [`EmiStreamer`] (push frames and audio, one [`StreamUpdate`] per hop; a model with a text
part also hears the words, [`LiveWords`]) and the sources the command line plays through it (`emi-hf stream`: a
video file, paced or not, or a local camera and microphone)."""

from .microphone import Microphone, live_events
from .sources import camera_events, file_events, run_stream
from .streamer import EmiStreamer
from .update import StreamUpdate, WindowWords
from .words import LiveWords

__all__ = ["EmiStreamer", "LiveWords", "Microphone", "StreamUpdate", "WindowWords", "camera_events", "file_events",
           "live_events", "run_stream"]
