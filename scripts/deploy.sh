#!/usr/bin/env bash
# From an empty project to a running service:
#   scripts/deploy.sh PROJECT [REGION]
# Terraform creates the stack (APIs, bucket, Firestore and its index, secrets, service account,
# image repository, the Cloud Run service); Cloud Build tests, builds, pushes and deploys the image.
# Needs terraform, gcloud (logged in: gcloud auth login && gcloud auth application-default login) and git.
set -euo pipefail
project=${1:?usage: scripts/deploy.sh PROJECT [REGION]}
region=${2:-europe-west1}
service=${SERVICE:-claude-scope}
cd "$(dirname "$0")/.."

terraform -chdir=infra init -input=false
terraform -chdir=infra apply -input=false ${AUTO_APPROVE:+-auto-approve} \
  -var "project=$project" -var "region=$region" -var "firestore_location=$region" -var "service=$service"

gcloud builds submit --project "$project" --region "$region" --config cloudbuild.yaml \
  --substitutions "_REGION=$region,_SERVICE=$service,_REPOSITORY=$service,_TAG=$(git rev-parse HEAD)" .

url=$(terraform -chdir=infra output -raw service_url)
echo "Deployed: $url"
curl -fsS "$url/health" && echo
