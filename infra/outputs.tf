output "service_url" {
  description = "HTTPS URL of the deployed service."
  value       = google_cloud_run_v2_service.scope.uri
}

output "bucket" {
  description = "Bucket holding recordings, frames, snapshots and prompts."
  value       = google_storage_bucket.objects.name
}

output "image_repository" {
  description = "Artifact Registry repository for the service's images."
  value       = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}"
}

output "service_account" {
  description = "The identity the service runs as."
  value       = google_service_account.scope.email
}

output "build_service_account" {
  description = "The identity Cloud Build runs as (scripts/deploy.sh passes it to gcloud builds submit)."
  value       = google_service_account.build.email
}

output "build_source_bucket" {
  description = "Where gcloud builds submit stages the source (the build account may read it)."
  value       = google_storage_bucket.build_source.name
}
