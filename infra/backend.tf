# Terraform state lives in a bucket, not on one person's disk. scripts/deploy.sh creates the bucket
# (PROJECT-SERVICE-tfstate, versioned) and passes it: terraform init -backend-config=bucket=...
terraform {
  backend "gcs" {
    prefix = "claude-scope"
  }
}
