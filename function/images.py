"""PNG encoding for screen content: one set of settings for every image the service makes."""

from __future__ import annotations

import cv2
import numpy as np

# Screen content: the "up" filter and run-length matching compress it as well as the default
# adaptive filters (often better) at a third of the time.
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def encode_png(image: np.ndarray) -> bytes:
    """``image`` (BGR or gray) as PNG; ValueError if OpenCV cannot encode it."""
    ok, buf = cv2.imencode(".png", image, _PNG_PARAMS)
    if not ok:
        raise ValueError("the image does not encode as PNG")
    return buf.tobytes()
