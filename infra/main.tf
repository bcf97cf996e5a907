# Claude Scope on Google Cloud: everything the service needs, in one project.
#
#   terraform -chdir=infra init && terraform -chdir=infra apply -var project=PROJECT
#
# scripts/deploy.sh first applies what a build needs (APIs, the image repository, the build's
# account), has Cloud Build test, build and push the image, then applies everything with that image:
# the service is created on the real image (h2c from the first revision) and Terraform owns it.

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.14, < 8.0"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}

locals {
  apis = [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudtasks.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ]
  secrets = {
    anthropic_api_key = "ANTHROPIC_API_KEY"
    api_keys          = "SCOPE_API_KEYS"
    signing_secret    = "SCOPE_SIGNING_SECRET"
  }
}

data "google_project" "current" {}

locals {
  # Cloud Run's deterministic URL: known before the service exists, so its tasks can call it back.
  service_url = "https://${var.service}-${data.google_project.current.number}.${var.region}.run.app"
}

resource "google_project_service" "apis" {
  for_each           = toset(local.apis)
  service            = each.value
  disable_on_destroy = false
}

resource "google_artifact_registry_repository" "images" {
  repository_id = var.service
  location      = var.region
  format        = "DOCKER"
  description   = "Claude Scope container images, tagged with the commit"
  depends_on    = [google_project_service.apis]
}

# The service's own identity, with the least it needs.
resource "google_service_account" "scope" {
  account_id   = var.service
  display_name = "Claude Scope service"
}

resource "google_storage_bucket" "objects" {
  name                        = "${var.project}-${var.service}"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  # Every object of a session (video, frames, snapshots, screenshots, prompt) goes after the
  # retention period; its record goes by the Firestore TTL policy below, on the same setting.
  lifecycle_rule {
    condition {
      age            = var.retention_days
      matches_prefix = ["sessions/"]
    }
    action {
      type = "Delete"
    }
  }
  # A deleted session is gone: no soft-delete window, no object versions.
  soft_delete_policy {
    retention_duration_seconds = 0
  }
  versioning {
    enabled = false
  }
  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "scope_objects" {
  bucket = google_storage_bucket.objects.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.scope.email}"
}

resource "google_firestore_database" "sessions" {
  name        = "(default)"
  location_id = var.firestore_location
  type        = "FIRESTORE_NATIVE"
  depends_on  = [google_project_service.apis]
}

# Listing a caller's sessions newest first: ownerId == X ORDER BY createdAt DESC, id DESC.
resource "google_firestore_index" "sessions_by_owner" {
  database   = google_firestore_database.sessions.name
  collection = "sessions"

  fields {
    field_path = "ownerId"
    order      = "ASCENDING"
  }
  fields {
    field_path = "createdAt"
    order      = "DESCENDING"
  }
  fields {
    field_path = "id"
    order      = "DESCENDING"
  }
}

# Session records carry expireAt (createdAt + SCOPE_RETENTION_DAYS); Firestore deletes them after it.
resource "google_firestore_field" "sessions_expire" {
  database   = google_firestore_database.sessions.name
  collection = "sessions"
  field      = "expireAt"
  ttl_config {}
  index_config {}
}

resource "google_project_iam_member" "scope_firestore" {
  project = var.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.scope.email}"
}

# Secrets: Terraform creates them; their values are added by hand (see the README), never in state.
resource "google_secret_manager_secret" "scope" {
  for_each  = local.secrets
  secret_id = "${var.service}-${replace(each.key, "_", "-")}"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_iam_member" "scope" {
  for_each  = google_secret_manager_secret.scope
  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.scope.email}"
}

# Recordings accepted with `Prefer: respond-async` become tasks here; each calls the service back
# (POST /jobs/{id}), so processing survives the instance that accepted the upload. A full instance
# answers 429 and a store outage 503: the queue retries for up to 15 minutes (the service marks a
# recording lost 20 minutes after its own deadline).
resource "google_cloud_tasks_queue" "recordings" {
  name     = "${var.service}-recordings"
  location = var.region

  rate_limits {
    max_concurrent_dispatches = var.max_instances * var.pipelines_per_instance
    max_dispatches_per_second = 5
  }
  retry_config {
    max_attempts       = 20
    max_retry_duration = "900s"
    min_backoff        = "10s"
    max_backoff        = "120s"
    max_doublings      = 3
  }
  depends_on = [google_project_service.apis]
}

resource "google_cloud_tasks_queue_iam_member" "scope_enqueues" {
  name     = google_cloud_tasks_queue.recordings.name
  location = var.region
  role     = "roles/cloudtasks.enqueuer"
  member   = "serviceAccount:${google_service_account.scope.email}"
}

# Only when Cloud Run checks invokers (var.public = false): the tasks carry an OIDC token of the
# service's account, which may then invoke the service and must be allowed to act as itself.
resource "google_cloud_run_v2_service_iam_member" "tasks_invoke" {
  count    = var.public ? 0 : 1
  name     = google_cloud_run_v2_service.scope.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scope.email}"
}

resource "google_service_account_iam_member" "tasks_act_as" {
  count              = var.public ? 0 : 1
  service_account_id = google_service_account.scope.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.scope.email}"
}

module "sizing" {
  source    = "./sizing"
  pipelines = var.pipelines_per_instance
}

resource "google_cloud_run_v2_service" "scope" {
  name                = var.service
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = false

  # The API checks its own Bearer keys (SCOPE_API_KEYS): with var.public, Cloud Run's invoker check
  # is off (no allUsers binding, which organisation policies often refuse).
  invoker_iam_disabled = var.public

  template {
    service_account                  = google_service_account.scope.email
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    timeout                          = "${var.request_timeout_seconds}s"
    max_instance_request_concurrency = var.pipelines_per_instance # one setting with SCOPE_MAX_INFLIGHT

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    containers {
      image = var.image

      # HTTP/2 end to end (h2c): Cloud Run then takes request bodies over 32 MiB.
      ports {
        name           = "h2c"
        container_port = 8080
      }

      # Each pipeline decodes video, runs OCR or Claude calls and a Chromium page: CPU and memory
      # follow from the pipelines per instance and what one was measured to need (infra/sizing).
      resources {
        limits = {
          cpu    = module.sizing.cpu
          memory = module.sizing.memory
        }
        startup_cpu_boost = true
        # Request-based billing: all work happens inside a request (the upload's, or the callback
        # of the task an accepted upload became).
        cpu_idle = true
      }

      startup_probe {
        http_get {
          path = "/health"
        }
        initial_delay_seconds = 2
        period_seconds        = 5
        failure_threshold     = 12
        timeout_seconds       = 4
      }

      env {
        name  = "SCOPE_STORAGE"
        value = "gcs"
      }
      env {
        name  = "SCOPE_SESSIONS"
        value = "firestore"
      }
      env {
        name  = "SCOPE_BUCKET"
        value = google_storage_bucket.objects.name
      }
      env {
        name  = "GOOGLE_CLOUD_PROJECT"
        value = var.project
      }
      env {
        name  = "SCOPE_MAX_INFLIGHT"
        value = tostring(var.pipelines_per_instance)
      }
      env {
        name  = "SCOPE_DEADLINE_S"
        value = tostring(var.request_timeout_seconds - 60)
      }
      env {
        name  = "SCOPE_CORS_ORIGINS"
        value = var.cors_origins
      }
      env {
        name  = "SCOPE_RETENTION_DAYS"
        value = tostring(var.retention_days)
      }
      env {
        name  = "SCOPE_TASKS_QUEUE"
        value = google_cloud_tasks_queue.recordings.id
      }
      env {
        name  = "SCOPE_SERVICE_URL"
        value = local.service_url
      }
      env {
        name  = "SCOPE_TASKS_INVOKER"
        value = var.public ? "" : google_service_account.scope.email
      }

      dynamic "env" {
        for_each = local.secrets
        content {
          name = env.value
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.scope[env.key].secret_id
              version = "latest"
            }
          }
        }
      }
    }
  }

  lifecycle {
    ignore_changes = [client, client_version]
    precondition {
      condition     = var.image != ""
      error_message = "The service needs its image: -var image=REGION-docker.pkg.dev/... (scripts/deploy.sh builds and passes it)."
    }
  }

  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.scope,
    google_storage_bucket_iam_member.scope_objects,
    google_project_iam_member.scope_firestore,
  ]
}

# Cloud Build runs as an account of its own with only what a build needs: read the uploaded
# source, write logs, push the image. It deploys nothing (Terraform does).
resource "google_service_account" "build" {
  account_id   = "${var.service}-build"
  display_name = "Claude Scope build"
}

locals {
  build_account = "serviceAccount:${google_service_account.build.email}"
}

resource "google_storage_bucket" "build_source" {
  name                        = "${var.project}-${var.service}-build-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.build_source.name
  role   = "roles/storage.objectViewer"
  member = local.build_account
}

resource "google_project_iam_member" "build_logs" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = local.build_account
}

resource "google_artifact_registry_repository_iam_member" "build_push" {
  repository = google_artifact_registry_repository.images.name
  location   = var.region
  role       = "roles/artifactregistry.writer"
  member     = local.build_account
}
