"""A property-based fuzz run against the OpenAPI file (schemathesis): no input gets a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_no_server_errors_for_generated_requests(start_service, tmp_path: Path) -> None:
    service = start_service(SCOPE_API_KEYS="alice:key-alice", SCOPE_ALLOW_PRIVATE_URLS="0")
    cli = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [str(cli), "run", str(REPO / "docs" / "openapi.yaml"), "--url", service.url, "--checks", "not_a_server_error",
         "--max-examples", "25", "--phases", "examples,coverage,fuzzing", "--seed", "20261129",
         "-H", "Authorization: Bearer key-alice"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its cache stays out of the repo
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.split("SUMMARY")[-1]
    assert "Traceback" not in service.log_path.read_text()
