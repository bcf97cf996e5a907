variable "project" {
  description = "Google Cloud project ID to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run service, the bucket and the image repository."
  type        = string
  default     = "europe-west1"
}

variable "firestore_location" {
  description = "Location of the Firestore database (a region such as europe-west1, or a multi-region such as eur3)."
  type        = string
  default     = "europe-west1"
}

variable "service" {
  description = "Name of the Cloud Run service; also names the bucket, the image repository, the service account and the secrets."
  type        = string
  default     = "claude-scope"
}

variable "image" {
  description = "The service's image, as Cloud Build pushed it (scripts/deploy.sh passes REGION-docker.pkg.dev/PROJECT/SERVICE/SERVICE:COMMIT)."
  type        = string
  default     = ""
  validation {
    condition     = var.image == "" || can(regex("-docker\\.pkg\\.dev/", var.image))
    error_message = "image must be an Artifact Registry image (REGION-docker.pkg.dev/...)."
  }
}

variable "retention_days" {
  description = "Days a session is kept: its objects (video, frames, snapshots, screenshots, prompt) by a bucket lifecycle rule, its record by a Firestore TTL policy."
  type        = number
  default     = 30
}

variable "request_timeout_seconds" {
  description = "Cloud Run request timeout; POST /recordings is synchronous, so it covers a whole pipeline (the service's own deadline is 60 s shorter)."
  type        = number
  default     = 900
}

variable "pipelines_per_instance" {
  description = "Recordings one instance processes at once: both the service's limit (SCOPE_MAX_INFLIGHT) and Cloud Run's request concurrency, so the platform starts another instance instead of the service answering 429; the instance's CPU and memory follow from it (infra/sizing)."
  type        = number
  default     = 2
}

variable "min_instances" {
  description = "Instances kept warm (0 lets the service scale to zero; 1 avoids a Chromium cold start)."
  type        = number
  default     = 0
}

variable "max_instances" {
  description = "Upper bound on instances, and so on cost."
  type        = number
  default     = 10
}

variable "cors_origins" {
  description = "Comma-separated browser origins allowed to call the API (SCOPE_CORS_ORIGINS)."
  type        = string
  default     = ""
}

variable "public" {
  description = "Let unauthenticated callers reach the service (it checks its own API keys): Cloud Run's invoker IAM check is turned off, no allUsers binding is made."
  type        = bool
  default     = true
}
