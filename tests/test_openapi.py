"""The OpenAPI file describes every route the service serves, and the contract's error codes."""

from __future__ import annotations

import re
import typing

import pytest
import yaml

from conftest import REPO
from function.config import Config
from function.http import create_app
from function.models import (AGENT_TARGETS, DEFAULT_AGENT_TARGET, SESSION_STATUSES, AriaNode, DiffSummary, Frame,
                             FrameAnalysis, Inspection, LaneTimings, Model, ProcessingResponse, Region, Session,
                             SessionCreate, SessionPatch, SessionView, Snapshot, Step, StepAction, StepTarget,
                             check_agent_target)
from function.prompts import RENDERERS


def test_every_route_is_documented() -> None:
    spec = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
    assert spec["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, item in spec["paths"].items() for method in item
                  if method in {"get", "post", "patch", "delete"}}
    served = set()
    app = create_app(Config(), None, None)  # type: ignore[arg-type] - only its routes are read
    page_routes = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("web.")}
    assert page_routes == {"/", "/ui/<path:filename>"}  # the web page, beside the API's routes, never on them
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(("api.", "web.")):
            continue  # the same routes under /api; the web page
        path = re.sub(r"<(\w+)>", lambda m: "{" + {"session_id": "sessionId", "frame_id": "frameId"}[m.group(1)] + "}",
                      rule.rule)
        served |= {(path, m) for m in rule.methods if m in {"GET", "POST", "PATCH", "DELETE"}}
    assert served == documented
    codes = set(spec["components"]["schemas"]["Error"]["properties"]["code"]["enum"])
    assert {"MISSING_FIELD", "INVALID_FIELD", "UNAUTHORIZED", "NOT_FOUND", "FILE_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE",
            "UNDECODABLE_VIDEO", "URL_NOT_ALLOWED", "BUSY", "INTERNAL", "UNAVAILABLE", "TIMEOUT"} <= codes


def spec() -> dict:
    return yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())


def served_fields(model: type[Model]) -> set[str]:
    """The JSON names a model puts on the wire."""
    return {f.alias or name for name, f in model.model_fields.items() if not f.exclude}


RECORD_ONLY = {Session.model_fields[name].alias for name in Session.RECORD_ONLY}


@pytest.mark.parametrize("name,fields", [
    ("Region", served_fields(Region)),
    ("AriaNode", served_fields(AriaNode)),
    ("Frame", served_fields(Frame)),
    ("Snapshot", served_fields(Snapshot)),
    ("Inspection", served_fields(Inspection)),
    ("LaneTimings", served_fields(LaneTimings)),
    ("Step", served_fields(Step)),
    ("ProcessingResponse", served_fields(ProcessingResponse)),
    ("Session", served_fields(Session) - RECORD_ONLY - {"inspection"} | {"processingStatus", "progress"}),
])
def test_schemas_match_the_models(name: str, fields: set[str]) -> None:
    """The OpenAPI file and the pydantic models that serialise the answers cannot drift apart."""
    schema = spec()["components"]["schemas"][name]
    assert set(schema["properties"]) == fields
    assert set(schema.get("required", [])) <= fields


def test_nested_and_body_schemas_match_the_models() -> None:
    document = spec()
    step = document["components"]["schemas"]["Step"]["properties"]
    assert step["action"]["enum"] == list(typing.get_args(StepAction))
    assert set(step["target"]["properties"]) == served_fields(StepTarget)
    frame = document["components"]["schemas"]["Frame"]["properties"]
    assert set(frame["analysis"]["properties"]) == served_fields(FrameAnalysis)
    assert set(frame["diffSummary"]["properties"]) == served_fields(DiffSummary)
    detail = document["components"]["schemas"]["SessionDetail"]["allOf"][1]["properties"]
    assert set(detail) == served_fields(SessionView) - served_fields(Session) | {"inspection"}
    patch = document["paths"]["/sessions/{sessionId}"]["patch"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(patch["properties"]) == served_fields(SessionPatch) and patch["additionalProperties"] is False
    create = document["paths"]["/sessions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(create["properties"]) == served_fields(SessionCreate) and create["required"] == ["title"]


def test_one_registry_of_agent_targets() -> None:
    document = spec()
    assert document["components"]["schemas"]["AgentTarget"]["enum"] == list(AGENT_TARGETS)
    assert document["components"]["schemas"]["SessionStatus"]["enum"] == list(SESSION_STATUSES)
    assert set(RENDERERS) == set(AGENT_TARGETS) and DEFAULT_AGENT_TARGET in AGENT_TARGETS
    assert check_agent_target("") == DEFAULT_AGENT_TARGET
    with pytest.raises(ValueError):
        check_agent_target("VSCODE")
