variable "project" {
  description = "Google Cloud project ID to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run service, the bucket and the Firestore database."
  type        = string
  default     = "europe-west1"
}

variable "service" {
  description = "Name of the Cloud Run service."
  type        = string
  default     = "claude-scope"
}

variable "image" {
  description = "Container image to run, e.g. REGION-docker.pkg.dev/PROJECT/claude-scope/claude-scope:COMMIT."
  type        = string
}
