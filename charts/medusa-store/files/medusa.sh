#!/bin/sh
# storekeeper Medusa setup, application side. Runs in the operator's Medusa image between
# `db.sh prepare` (which wrote $STATE_DIR/markers) and `db.sh record` (which stores
# $STATE_DIR/done). Migrations run every time (they are idempotent; Medusa's own migration
# scripts, e.g. the dtc-starter's seed in src/migration-scripts, run once each); the admin user and
# the seed run once, guarded by their markers. Credentials come from the environment.
set -eu

: "${MEDUSA_BIN:?}" "${STORE_ADMIN_EMAIL:?}" "${STORE_ADMIN_PASSWORD:?}" "${MIGRATION_ID:?}"
: "${SETUP_VERSION:?}" "${SETUP_HASH:?}"
STATE_DIR="${STATE_DIR:-/state}"
SEED_ENABLED="${SEED_ENABLED:-false}"
SEED_SCRIPT="${SEED_SCRIPT:-}"
# --execute-safe-links: link changes are applied where safe instead of prompting on a terminal the
# Job does not have (unsafe ones, such as dropping a link table, are left for an operator).
MIGRATE_ARGS="${MIGRATE_ARGS:---execute-safe-links}"
SEED_ONCE="${SEED_ONCE:-/scripts/seed-once.js}"

log() { printf '%s storekeeper-medusa: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

has_marker() { grep -q "^$1=" "$STATE_DIR/markers"; }

: >"$STATE_DIR/done"

log "running migrations: db:migrate $MIGRATE_ARGS"
# The arguments are operator configuration (setup.migrateArgs); split on spaces on purpose.
# shellcheck disable=SC2086
"$MEDUSA_BIN" db:migrate $MIGRATE_ARGS

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
  log "seed disabled (setup.seed.enabled)"
elif has_marker seeded; then
  log "already seeded"
elif [ ! -f "$SEED_SCRIPT" ]; then
  log "seed skipped: $SEED_SCRIPT is not in the image (the dtc-starter seeds from src/migration-scripts during db:migrate)"
else
  # seed-once.js runs the seed inside `medusa exec` and writes the marker `seeded` through the same
  # process's database connection right after the seed returns: a retried pod never seeds twice.
  log "seeding with $SEED_SCRIPT"
  "$MEDUSA_BIN" exec "$SEED_ONCE" "$SEED_SCRIPT"
fi

{
  echo "migrated=$MIGRATION_ID"
  echo "setup_hash=$SETUP_HASH"
  echo "setup_version=$SETUP_VERSION"
} >>"$STATE_DIR/done"
log "done"
