#!/usr/bin/env bash
# Run the Chartreuse migration for one release from CI (or a terminal) and wait for it.
#
#   NAMESPACE=shop DATABASE_SECRET=shop-db GIT_URL=https://github.com/acme/shop.git \
#   GIT_REVISION=v1.4.0 MIGRATIONS_DIR=db/migrations WORKLOAD_SELECTOR=app.kubernetes.io/name=shop \
#   ./submit.sh
#
# Needs the argo CLI (v3.7) and a kubeconfig allowed to create Workflows in NAMESPACE:
# submitter-rbac.yaml beside this script is a ServiceAccount whose token may do exactly
# what this script does (and argo logs), nothing more.
# Exit status: 0 when the workflow Succeeded, non-zero otherwise; `argo get` prints every
# node (skipped ones too) for the CI log.
set -euo pipefail

: "${NAMESPACE:?namespace of the application and of the WorkflowTemplate}"
: "${DATABASE_SECRET:?name of the Secret holding the database URL}"
IMAGE="${IMAGE:-ghcr.io/chartreuse-go/chartreuse:0.1.0}"

args=(
  -n "$NAMESPACE"
  --from workflowtemplate/chartreuse
  -p image="$IMAGE"
  -p database-secret="$DATABASE_SECRET"
  -p database-secret-key="${DATABASE_SECRET_KEY:-url}"
  -p workload-selector="${WORKLOAD_SELECTOR:-}"
  -p stop-workloads="${STOP_WORKLOADS:-true}"
  -p patroni="${PATRONI:-false}"
  -p on-migrate-failure="${ON_MIGRATE_FAILURE:-keep-down}"
  --labels "app.kubernetes.io/name=chartreuse,app.kubernetes.io/instance=${DATABASE_SECRET}"
  --output name
)
if [[ -n "${GIT_URL:-}" ]]; then
  # Migrations from the application's repository at the release tag.
  args+=(-p git-url="$GIT_URL" -p git-revision="${GIT_REVISION:?tag to take the migrations from}"
         -p migrations-dir="${MIGRATIONS_DIR:-db/migrations}")
else
  # Migrations baked into the image at /migrations (or MIGRATIONS_DIR).
  args+=(-p migrations-dir="${MIGRATIONS_DIR:-/migrations}")
fi

name=$(argo submit "${args[@]}")
name=${name#workflow.argoproj.io/}
echo "submitted workflow $name"
status=0
argo wait -n "$NAMESPACE" "$name" || status=$?   # exits 1 unless the workflow Succeeded
argo get -n "$NAMESPACE" "$name" || true
exit "$status"
