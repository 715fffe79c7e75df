#!/bin/sh
# storekeeper Medusa setup, application side. Runs in the operator's Medusa image between
# `db.sh prepare` (which wrote $STATE_DIR/markers) and `db.sh record` (which stores
# $STATE_DIR/done). Migrations run every time (they are idempotent); the admin user and the seed
# run once, guarded by their markers. Credentials come from the environment (the store's Secret).
set -eu

: "${MEDUSA_BIN:?}" "${STORE_ADMIN_EMAIL:?}" "${STORE_ADMIN_PASSWORD:?}" "${MIGRATION_ID:?}"
: "${SETUP_VERSION:?}" "${SETUP_HASH:?}"
STATE_DIR="${STATE_DIR:-/state}"
SEED_ENABLED="${SEED_ENABLED:-true}"
SEED_COMMAND="${SEED_COMMAND:-}"

log() { printf '%s storekeeper-medusa: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

has_marker() { grep -q "^$1=" "$STATE_DIR/markers"; }

: >"$STATE_DIR/done"

log "running migrations"
"$MEDUSA_BIN" db:migrate

if has_marker admin; then
  log "admin user already created"
else
  log "creating admin user $STORE_ADMIN_EMAIL"
  if ! "$MEDUSA_BIN" user -e "$STORE_ADMIN_EMAIL" -p "$STORE_ADMIN_PASSWORD" >"$STATE_DIR/user.log" 2>&1; then
    if grep -qi "already exists" "$STATE_DIR/user.log"; then
      log "admin user existed already"
    else
      cat "$STATE_DIR/user.log" >&2
      exit 1
    fi
  fi
  echo "admin=$STORE_ADMIN_EMAIL" >>"$STATE_DIR/done"
fi

if [ "$SEED_ENABLED" != "true" ]; then
  log "seed disabled"
elif has_marker seeded; then
  log "already seeded"
else
  log "seeding: $SEED_COMMAND"
  # The command is operator configuration (setup.seed.command); split on spaces on purpose.
  # shellcheck disable=SC2086
  $SEED_COMMAND
  echo "seeded=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$STATE_DIR/done"
fi

{
  echo "migrated=$MIGRATION_ID"
  echo "setup_hash=$SETUP_HASH"
  echo "setup_version=$SETUP_VERSION"
} >>"$STATE_DIR/done"
log "done"
