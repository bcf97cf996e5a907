# Claude Scope on Google Cloud: the bucket, the Firestore database and the Cloud Run service.

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

resource "google_storage_bucket" "objects" {
  name                        = "${var.project}-claude-scope"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
}

resource "google_firestore_database" "sessions" {
  name        = "(default)"
  location_id = var.region
  type        = "FIRESTORE_NATIVE"
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

resource "google_cloud_run_v2_service" "scope" {
  name     = var.service
  location = var.region

  template {
    timeout                          = "900s"
    max_instance_request_concurrency = 4
    containers {
      image = var.image
      ports {
        container_port = 8080
      }
      resources {
        limits = { cpu = "2", memory = "4Gi" }
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
    }
  }
}
