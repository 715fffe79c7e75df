#!/bin/sh
# storekeeper Medusa backup. templates/backup-cronjob.yaml runs the steps in two containers:
#   backup.sh dump     postgres image: pg_dump -Fc of PGDATABASE into $BACKUP_ROOT/db/database.pgdump,
#                      then $BACKUP_ROOT/db/storekeeper.meta
#   backup.sh upload   restic image: restic backup of $BACKUP_ROOT/db and $BACKUP_ROOT/files (the
#                      uploads of Medusa's local file provider, /app/static), tagged storekeeper,
#                      store=<name>, revision=<rev>; then restic forget --prune with
#                      KEEP_DAILY/KEEP_WEEKLY/KEEP_MONTHLY
#   backup.sh all      both, where both tools are installed
# Inputs are environment variables only (README.md, "Backups"); exit codes in backup-lib.sh.
set -eu

here="$(dirname "$0")"
# shellcheck source=/dev/null # sibling files, each checked on its own
. "$here/backup-lib.sh"
# shellcheck source=/dev/null
. "$here/backup-db.sh"

case "${1:-}" in
  dump) sk_backup_dump ;;
  upload) sk_backup_upload ;;
  all) (sk_backup_dump) && sk_backup_upload ;;
  *)
    echo "usage: $0 dump|upload|all" >&2
    exit 2
    ;;
esac
