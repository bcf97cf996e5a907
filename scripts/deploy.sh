#!/usr/bin/env bash
# From an empty project to a running service, and the same command again for each new version:
#   SCOPE_API_KEYS=alice:SECRET [ANTHROPIC_API_KEY=...] scripts/deploy.sh PROJECT [REGION]
# 1. Terraform enables the APIs and creates what a build needs (the image repository, the build's own
#    account and source bucket) and the secrets; their values are added here with gcloud (never in
#    Terraform state): the API keys, the Anthropic key (without one: the local analyser), a signing secret.
# 2. Cloud Build, as the build account, runs the tests, builds the image and pushes it tagged with the commit.
# 3. Terraform applies everything with that image: the bucket, Firestore, the service's account and
#    roles, and the Cloud Run service (created on the real image, so h2c from its first revision).
# Idempotent: a second run changes only what changed (the state bucket is made once). Rolling back: rerun with an older commit checked out.
# Needs terraform, gcloud (gcloud auth login && gcloud auth application-default login), git, openssl, curl.
set -euo pipefail
project=${1:?usage: SCOPE_API_KEYS=owner:key scripts/deploy.sh PROJECT [REGION]}
region=${2:-europe-west1}
service=${SERVICE:-claude-scope}
: "${SCOPE_API_KEYS:?set SCOPE_API_KEYS=owner:key[,owner:key] so that the deployed API is not open}"
cd "$(dirname "$0")/.."

tag=$(git rev-parse HEAD)
image="$region-docker.pkg.dev/$project/$service/$service:$tag"
vars=(-var "project=$project" -var "region=$region" -var "firestore_location=$region" -var "service=$service")
approve=(${AUTO_APPROVE:+-auto-approve})

# What Terraform itself needs before it can enable anything, and a versioned bucket for its state.
gcloud services enable serviceusage.googleapis.com cloudresourcemanager.googleapis.com storage.googleapis.com \
  --project "$project"
state_bucket="gs://$project-$service-tfstate"
if ! gcloud storage buckets describe "$state_bucket" --project "$project" >/dev/null 2>&1; then
  gcloud storage buckets create "$state_bucket" --project "$project" --location "$region" \
    --uniform-bucket-level-access --public-access-prevention
  gcloud storage buckets update "$state_bucket" --project "$project" --versioning
fi
terraform -chdir=infra init -input=false -reconfigure -backend-config="bucket=$project-$service-tfstate"
terraform -chdir=infra apply -input=false "${approve[@]}" "${vars[@]}" \
  -target=google_project_service.apis -target=google_secret_manager_secret.scope \
  -target=google_artifact_registry_repository_iam_member.build_push \
  -target=google_storage_bucket_iam_member.build_reads_source -target=google_project_iam_member.build_logs

add_secret() {  # name value: a new version only when the value changed
  local current
  current=$(gcloud secrets versions access latest --secret "$1" --project "$project" 2>/dev/null || true)
  if [ "$current" != "$2" ]; then
    printf '%s' "$2" | gcloud secrets versions add "$1" --data-file=- --project "$project" >/dev/null
  fi
}
add_secret "$service-api-keys" "$SCOPE_API_KEYS"
add_secret "$service-anthropic-api-key" "${ANTHROPIC_API_KEY:- }"  # a blank key means: local analyser
if ! gcloud secrets versions access latest --secret "$service-signing-secret" --project "$project" >/dev/null 2>&1; then
  add_secret "$service-signing-secret" "$(openssl rand -hex 32)"
fi

build_account=$(terraform -chdir=infra output -raw build_service_account)
source_bucket=$(terraform -chdir=infra output -raw build_source_bucket)
gcloud builds submit --project "$project" --region "$region" --config cloudbuild.yaml \
  --service-account "projects/$project/serviceAccounts/$build_account" \
  --gcs-source-staging-dir "gs://$source_bucket/source" \
  --substitutions "_REGION=$region,_SERVICE=$service,_REPOSITORY=$service,_TAG=$tag" .

terraform -chdir=infra apply -input=false "${approve[@]}" "${vars[@]}" -var "image=$image"

url=$(terraform -chdir=infra output -raw service_url)
echo "Deployed $image: $url"
curl -fsS "$url/health" && echo
