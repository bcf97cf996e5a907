# Claude Scope on Google Cloud: everything the service needs, in one project.
#
#   terraform -chdir=infra init && terraform -chdir=infra apply -var project=PROJECT
#
# The Cloud Run service starts on a placeholder image; Cloud Build (cloudbuild.yaml) deploys the
# real one, tagged with the commit, and Terraform leaves the image alone after that.

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0"
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

  # Recordings are the bulk of the storage and are not needed once the prompt is made.
  lifecycle_rule {
    condition {
      age            = var.video_retention_days
      matches_prefix = ["sessions/"]
      matches_suffix = [".webm", ".mp4", ".mkv"]
    }
    action {
      type = "Delete"
    }
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

resource "google_cloud_run_v2_service" "scope" {
  name                = var.service
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = false

  template {
    service_account                  = google_service_account.scope.email
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    timeout                          = "${var.request_timeout_seconds}s"
    max_instance_request_concurrency = var.concurrency

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

      # Two pipelines at once per instance, each decoding video, running OCR or Claude calls
      # and a Chromium page: 2 vCPU keep the decoder near its speed; Chromium, the decoder and
      # frame images fit in 4 GiB with room (measured peak ≈ 1 GiB per pipeline).
      resources {
        limits = {
          cpu    = "2"
          memory = "4Gi"
        }
        startup_cpu_boost = true
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
        value = "2"
      }
      env {
        name  = "SCOPE_DEADLINE_S"
        value = tostring(var.request_timeout_seconds - 60)
      }
      env {
        name  = "SCOPE_CORS_ORIGINS"
        value = var.cors_origins
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
    ignore_changes = [template[0].containers[0].image, client, client_version]
  }

  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.scope,
    google_storage_bucket_iam_member.scope_objects,
    google_project_iam_member.scope_firestore,
  ]
}

# Cloud Build (cloudbuild.yaml) pushes images and deploys new revisions that run as the service's account.
data "google_project" "current" {}

locals {
  build_account = "serviceAccount:${coalesce(var.build_service_account, "${data.google_project.current.number}@cloudbuild.gserviceaccount.com")}"
}

resource "google_artifact_registry_repository_iam_member" "build_push" {
  repository = google_artifact_registry_repository.images.name
  location   = var.region
  role       = "roles/artifactregistry.writer"
  member     = local.build_account
}

resource "google_project_iam_member" "build_deploy" {
  project = var.project
  role    = "roles/run.developer"
  member  = local.build_account
}

resource "google_service_account_iam_member" "build_acts_as_scope" {
  service_account_id = google_service_account.scope.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.build_account
}

# The API has its own Bearer-key auth (SCOPE_API_KEYS), so Cloud Run lets every caller through.
resource "google_cloud_run_v2_service_iam_member" "public" {
  count    = var.public ? 1 : 0
  name     = google_cloud_run_v2_service.scope.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "allUsers"
}
