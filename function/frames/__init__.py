"""Video file → key frames: one frame per meaningful UI change, by SSIM differencing.

``decode`` reads the video; ``regions`` locates and judges what changed; ``rules``
explain away the pointer, the caret and codec specks; ``detect`` settles each change
and keeps its frame. Run alone: ``python -m function.frames VIDEO`` prints the kept
frames as JSON.
"""

from .decode import DecodedFrame, Limits, Probe, VideoError, decode, probe
from .detect import Cancelled, extract

__all__ = ["Cancelled", "DecodedFrame", "Limits", "Probe", "VideoError", "decode", "extract", "probe"]
