"""Key frames → what a person would say they show: descriptions, on-screen text, UI elements, the flow.

``Vision`` (the provider-neutral core) runs a provider — ``ClaudeProvider`` with an
API key, ``LocalProvider`` without — and lets a fallback provider stand in for any
batch the main one fails on.
"""

from .claude import MAX_IMAGE_EDGE, REPORT_TOOL, ClaudeProvider, ClaudeSettings, Report, ReportedFrame
from .core import (Analyser, Batch, Batcher, FrameSink, HintSource, Provider, ProviderFailed, Reading, StreamEvents,
                   Unheard, Vision, VisionStream, batched)
from .local import LOCAL_PROVIDER, LocalProvider

__all__ = [
    "LOCAL_PROVIDER", "MAX_IMAGE_EDGE", "REPORT_TOOL", "Analyser", "Batch", "Batcher", "ClaudeProvider",
    "ClaudeSettings", "FrameSink", "HintSource", "LocalProvider", "Provider", "ProviderFailed", "Reading", "Report",
    "ReportedFrame", "StreamEvents", "Unheard", "Vision", "VisionStream", "batched",
]
