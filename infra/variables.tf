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
  description = "Image for the first deployment; Cloud Build deploys the real ones afterwards."
  type        = string
  default     = "us-docker.pkg.dev/cloudrun/container/hello"
}

variable "video_retention_days" {
  description = "Days after which uploaded recordings are deleted from the bucket (frames, snapshots and prompts stay)."
  type        = number
  default     = 30
}

variable "request_timeout_seconds" {
  description = "Cloud Run request timeout; POST /recordings is synchronous, so it covers a whole pipeline (the service's own deadline is 60 s shorter)."
  type        = number
  default     = 900
}

variable "concurrency" {
  description = "Requests one instance takes at once: two pipelines (SCOPE_MAX_INFLIGHT) plus light Sessions API calls."
  type        = number
  default     = 8
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
  description = "Let unauthenticated callers reach the service (it checks its own API keys)."
  type        = bool
  default     = true
}

variable "build_service_account" {
  description = "Email of the account Cloud Build runs as (empty: the project's legacy Cloud Build account)."
  type        = string
  default     = ""
}
