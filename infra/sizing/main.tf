# An instance's CPU and memory, from the recordings it processes at once and what one was measured
# to need (scripts/load_test.py, docs/BENCHMARKS.md "Memory per pipeline"). A module of its own,
# with no provider, so the arithmetic can be applied and checked alone.

variable "pipelines" {
  description = "Recordings one instance processes at once (pipelines_per_instance)."
  type        = number
  validation {
    condition     = var.pipelines >= 1 && var.pipelines <= 8
    error_message = "An instance runs 1 to 8 pipelines (Cloud Run offers at most 8 vCPU)."
  }
}

locals {
  # Measured on a 4K recording (the largest the service accepts), proportional set sizes of the
  # service, Chromium and Tesseract processes plus the upload in /tmp (memory on Cloud Run): an
  # instance with its browser started holds 0.77 GiB; each pipeline adds at most 0.45 GiB.
  idle_gib         = 0.8
  per_pipeline_gib = 0.5
  headroom         = 1.5 # what a 0.25 s sampler misses, heavier pages, a larger heap over time
  memory_gib       = ceil((local.idle_gib + local.per_pipeline_gib * var.pipelines) * local.headroom)
  # A pipeline alone keeps two cores busy while it decodes; two at once take twice as long each
  # (the same throughput), so one vCPU per pipeline, rounded up to a size Cloud Run offers.
  cpu = [for size in [1, 2, 4, 6, 8] : size if size >= var.pipelines][0]
}

output "cpu" {
  description = "vCPUs of one instance."
  value       = tostring(local.cpu)
}

output "memory" {
  description = "Memory limit of one instance, in Cloud Run's notation."
  value       = "${local.memory_gib}Gi"
}
