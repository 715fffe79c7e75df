#!/bin/sh
# storekeeper Medusa restore, in steps (one container each; see backup-lib.sh):
#   restore.sh check     postgres image: wait for the database, read the restore marker, decide
#   restore.sh fetch     restic image: the snapshot's dump and uploads (into FILES_DIR)
#   restore.sh load      postgres image: marker state=restoring, then pg_restore in one transaction
#   restore.sh rewrite   postgres image: the old store URL replaced by STORE_URL in stored values
#   restore.sh finish    postgres image: marker state=done
#   restore.sh all       every step in order, where every tool is installed
# Inputs are environment variables only (README.md, "Backups"); exit codes in backup-lib.sh.
set -eu

here="$(dirname "$0")"
# shellcheck source=/dev/null # sibling files, each checked on its own
. "$here/backup-lib.sh"
# shellcheck source=/dev/null
. "$here/backup-db.sh"

# Medusa's URL settings (MEDUSA_BACKEND_URL, the CORS origins) are environment the chart renders
# from the new host; what the database holds are absolute URLs written at upload time (the local
# file provider's backend_url: product thumbnails, image URLs, line-item thumbnails, metadata).
# Medusa's equivalent of wp search-replace: every text, varchar and jsonb column of the public
# schema (not the storekeeper_* marker tables, not generated columns) has the old URL replaced,
# in one transaction. JSON needs no escaping: a URL of scheme://host[:port] has no " or \.
rewrite() {
  sk_step rewrite
  sk_restore_settings
  if [ "$(sk_decision)" = skip ]; then
    sk_log "restored before; nothing to rewrite"
    return 0
  fi
  sk_tmpdir
  db_settings
  old="$(cat "$RESTORE_WORK/source_url")"
  sk_valid "the snapshot's store URL" "$old" 'https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?' 'scheme://host[:port]'
  if [ "$old" = "$STORE_URL" ]; then
    sk_log "same URL as the snapshot ($old): nothing to rewrite"
    return 0
  fi
  # The URL as recorded, then the same host under the other scheme (mixed http/https values).
  case $old in
    http://*) other="https://${old#http://}" ;;
    *) other="http://${old#https://}" ;;
  esac
  if [ "$other" = "$STORE_URL" ]; then other=$old; fi
  sk_log "replacing $old (and $other) with $STORE_URL in the stored values"
  db_sql -1 -v old="$old" -v other="$other" -v new="$STORE_URL" <<'SQL' ||
SET storekeeper.old = :'old';
SET storekeeper.other = :'other';
SET storekeeper.new = :'new';
DO $$
DECLARE
  col record;
  pass text;
  changed bigint;
  total bigint := 0;
BEGIN
  FOR col IN
    SELECT c.table_name, c.column_name, c.data_type
    FROM information_schema.columns c
    JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
    WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND c.is_generated = 'NEVER'
      AND c.data_type IN ('text', 'character varying', 'jsonb')
      AND c.table_name NOT LIKE 'storekeeper\_%'
    ORDER BY c.table_name, c.column_name
  LOOP
    FOREACH pass IN ARRAY ARRAY[current_setting('storekeeper.old'), current_setting('storekeeper.other')] LOOP
      IF col.data_type = 'jsonb' THEN
        EXECUTE format('UPDATE public.%I SET %I = replace(%I::text, $1, $2)::jsonb WHERE strpos(%I::text, $1) > 0',
                       col.table_name, col.column_name, col.column_name, col.column_name)
          USING pass, current_setting('storekeeper.new');
      ELSE
        EXECUTE format('UPDATE public.%I SET %I = replace(%I, $1, $2) WHERE strpos(%I, $1) > 0',
                       col.table_name, col.column_name, col.column_name, col.column_name)
          USING pass, current_setting('storekeeper.new');
      END IF;
      GET DIAGNOSTICS changed = ROW_COUNT;
      total := total + changed;
    END LOOP;
  END LOOP;
  RAISE NOTICE 'storekeeper: % values rewritten', total;
END
$$;
SQL
    sk_die "$SK_FAILED" rewrite_failed "replacing $old with $STORE_URL failed"
}

case "${1:-}" in
  check) sk_restore_check ;;
  fetch) sk_restore_fetch ;;
  load) sk_restore_load ;;
  rewrite) rewrite ;;
  finish) sk_restore_finish ;;
  all) (sk_restore_check) && (sk_restore_fetch) && (sk_restore_load) && (rewrite) && sk_restore_finish ;;
  *)
    echo "usage: $0 check|fetch|load|rewrite|finish|all" >&2
    exit 2
    ;;
esac
