"""Who is calling, and which frame images an ``<img>`` may load without a Bearer token.

API keys map to their owners (``SCOPE_API_KEYS``). A frame's ``thumbnailUrl`` carries a
short-lived signature made with itsdangerous: it names one session's one frame, carries
its own time, and cannot be moved to another frame or re-dated.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Mapping

from itsdangerous import BadSignature, URLSafeTimedSerializer

ANONYMOUS = "anonymous"
THUMBNAIL_TTL_S = 3600


class Unauthorized(Exception):
    """The Bearer token is missing or not one of the configured keys."""


def owner_of(authorization: str, api_keys: Mapping[str, str]) -> str:
    """The owner of the Bearer key in an ``Authorization`` header; ``anonymous`` when auth is off."""
    if not api_keys:
        return ANONYMOUS
    scheme, _, token = authorization.partition(" ")
    owner = None
    if scheme.lower() == "bearer" and token.strip():
        presented = token.strip().encode()
        for key, key_owner in api_keys.items():  # every key compared, in constant time each
            if hmac.compare_digest(presented, key.encode()):
                owner = key_owner
    if owner is None:
        raise Unauthorized("a valid Authorization: Bearer <key> header is required")
    return owner


def frame_path(session_id: str, frame_id: str) -> str:
    """A frame image's path on this API (the unsigned ``thumbnailUrl``)."""
    return f"/sessions/{session_id}/frames/{frame_id}"


class FrameSigner:
    """Signs and checks frame image URLs; a random secret when none is configured (one instance only)."""

    def __init__(self, secret: str = "", ttl_s: int = THUMBNAIL_TTL_S) -> None:
        self._serializer = URLSafeTimedSerializer(secret or secrets.token_hex(32), salt="scope.frame-url")
        self.ttl_s = ttl_s

    def signed_path(self, session_id: str, frame_id: str) -> str:
        token = self._serializer.dumps([session_id, frame_id])
        return f"{frame_path(session_id, frame_id)}?signature={token}"

    def allows(self, signature: str, session_id: str, frame_id: str) -> bool:
        """Is ``signature`` ours, younger than the TTL, and made for this very frame?"""
        if not signature:
            return False
        try:
            signed = self._serializer.loads(signature, max_age=self.ttl_s)
        except BadSignature:  # also SignatureExpired
            return False
        return signed == [session_id, frame_id]
