"""The OpenAPI file describes every route the service serves, and the contract's error codes."""

from __future__ import annotations

import re

import yaml

from conftest import REPO
from function.http import ROUTES


def test_every_route_is_documented() -> None:
    spec = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
    assert spec["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, item in spec["paths"].items() for method in item
                  if method in {"get", "post", "patch", "delete"}}
    served = set()
    for rule in ROUTES.iter_rules():
        path = re.sub(r"<(\w+)>", lambda m: "{" + {"session_id": "sessionId", "frame_id": "frameId"}[m.group(1)] + "}",
                      rule.rule)
        served |= {(path, m) for m in rule.methods if m in {"GET", "POST", "PATCH", "DELETE"}}
    assert served == documented
    codes = set(spec["components"]["schemas"]["Error"]["properties"]["code"]["enum"])
    assert {"MISSING_FIELD", "INVALID_FIELD", "UNAUTHORIZED", "NOT_FOUND", "FILE_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE",
            "UNDECODABLE_VIDEO", "URL_NOT_ALLOWED", "BUSY", "INTERNAL", "UNAVAILABLE", "TIMEOUT"} <= codes
