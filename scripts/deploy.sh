#!/usr/bin/env bash
# From an empty project to a running service:
#   SCOPE_API_KEYS=alice:SECRET [ANTHROPIC_API_KEY=...] scripts/deploy.sh PROJECT [REGION]
# 1. Terraform creates the secrets; their values are added here with gcloud (never in Terraform state):
#    the API keys, the Anthropic key (without one the service uses its local analyser), a signing secret.
# 2. Terraform creates the rest of the stack (APIs, bucket, Firestore and its index, service account,
#    image repository, the Cloud Run service).
# 3. Cloud Build tests, builds, pushes the image tagged with the commit and deploys it.
# Needs terraform, gcloud (gcloud auth login && gcloud auth application-default login), git, openssl.
set -euo pipefail
project=${1:?usage: SCOPE_API_KEYS=owner:key scripts/deploy.sh PROJECT [REGION]}
region=${2:-europe-west1}
service=${SERVICE:-claude-scope}
: "${SCOPE_API_KEYS:?set SCOPE_API_KEYS=owner:key[,owner:key] so that the deployed API is not open}"
cd "$(dirname "$0")/.."

vars=(-var "project=$project" -var "region=$region" -var "firestore_location=$region" -var "service=$service")
terraform -chdir=infra init -input=false
terraform -chdir=infra apply -input=false ${AUTO_APPROVE:+-auto-approve} "${vars[@]}" \
  -target=google_project_service.apis -target=google_secret_manager_secret.scope

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

terraform -chdir=infra apply -input=false ${AUTO_APPROVE:+-auto-approve} "${vars[@]}"

gcloud builds submit --project "$project" --region "$region" --config cloudbuild.yaml \
  --substitutions "_REGION=$region,_SERVICE=$service,_REPOSITORY=$service,_TAG=$(git rev-parse HEAD)" .

url=$(terraform -chdir=infra output -raw service_url)
echo "Deployed: $url"
curl -fsS "$url/health" && echo
