#!/bin/sh
# storekeeper Medusa setup, database side. Runs in the official postgres image with PGHOST,
# PGPORT, PGUSER, PGDATABASE and PGPASSWORD (from the store's Secret) in the environment.
#   db.sh prepare        wait for Postgres, create the marker table, write the markers to $STATE_DIR/markers
#   db.sh record         store every "key=value" line of $STATE_DIR/done as a marker
#   db.sh wait-migrated  wait until the marker "migrated" equals $MIGRATION_ID (server/worker init)
# Markers live in the table storekeeper_setup(key, value, updated_at) of the store's database.
set -eu

STATE_DIR="${STATE_DIR:-/state}"
WAIT_SECONDS="${WAIT_SECONDS:-600}"

log() { printf '%s storekeeper-db: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

wait_until() {
  what="$1"
  shift
  waited=0
  until "$@" >/dev/null 2>&1; do
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
      log "gave up waiting for $what after ${WAIT_SECONDS}s"
      exit 1
    fi
    sleep 5
    waited=$((waited + 5))
  done
  log "$what: ok"
}

sql() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

marker() {
  sql -tA -v k="$1" <<'SQL'
SELECT value FROM storekeeper_setup WHERE key = :'k';
SQL
}

migrated_is_current() {
  [ "$(marker migrated)" = "${MIGRATION_ID:?}" ]
}

case "${1:-}" in
  prepare)
    wait_until "postgres at $PGHOST" pg_isready -q
    sql <<'SQL'
CREATE TABLE IF NOT EXISTS storekeeper_setup (
  key text PRIMARY KEY,
  value text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
SQL
    sql -tA -F= -c "SELECT key, value FROM storekeeper_setup ORDER BY key" >"$STATE_DIR/markers"
    log "markers: $(tr '\n' ' ' <"$STATE_DIR/markers")"
    ;;
  record)
    if [ ! -s "$STATE_DIR/done" ]; then
      log "nothing to record"
      exit 1
    fi
    while IFS='=' read -r key value; do
      [ -n "$key" ] || continue
      sql -v k="$key" -v v="$value" <<'SQL'
INSERT INTO storekeeper_setup (key, value) VALUES (:'k', :'v')
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
SQL
      log "marker $key=$value recorded"
    done <"$STATE_DIR/done"
    ;;
  wait-migrated)
    wait_until "postgres at $PGHOST" pg_isready -q
    wait_until "migrations for ${MIGRATION_ID:?}" migrated_is_current
    ;;
  *)
    echo "usage: $0 prepare|record|wait-migrated" >&2
    exit 2
    ;;
esac
