# shellcheck shell=sh
# storekeeper Medusa backup/restore, the PostgreSQL side: sourced by backup.sh and restore.sh
# after backup-lib.sh. Runs where psql, pg_dump and pg_restore are (the postgres image).
#
# Connection: libpq's own PGHOST, PGPORT (5432), PGDATABASE, PGUSER and PGPASSWORD (from the
# store's Secret), as for the setup Job's db.sh; the password is never on a command line.

# Read by backup-lib.sh. The restore marker (README.md, "Backups") is key/value rows in
# MARKER_TABLE of the store's database; dumps leave it out, so a clone of a restored store starts
# without its source's history.
# shellcheck disable=SC2034
{
  ENGINE=medusa
  DUMP_FILE=database.pgdump
  MARKER_TABLE=storekeeper_restore
}

db_settings() {
  sk_require PGHOST PGDATABASE PGUSER PGPASSWORD
  sk_valid PGHOST "$PGHOST" '[A-Za-z0-9.-]{1,253}' 'a host name or address'
  PGPORT="${PGPORT:-5432}"
  sk_valid PGPORT "$PGPORT" '[0-9]{1,5}' 'a port number'
  sk_valid PGDATABASE "$PGDATABASE" '[A-Za-z0-9_]{1,63}' 'letters, digits and _'
  sk_valid PGUSER "$PGUSER" '[A-Za-z0-9_.-]{1,63}' 'letters, digits and _.-'
  export PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD
  DB_NAME=$PGDATABASE
  DB_HOST=$PGHOST
  DB_PORT=$PGPORT
}

# db_sql ARGS...: psql on PGDATABASE; stops at the first error; unaligned output, no headers.
db_sql() {
  psql -X -q -v ON_ERROR_STOP=1 -tA "$@"
}

db_wait() {
  sk_wait_for "database $PGDATABASE at $PGHOST:$PGPORT" "${WAIT_SECONDS:-600}" db_sql -c 'SELECT 1' ||
    sk_die "$SK_UNREACHABLE" database_unreachable \
      "database $PGDATABASE at $PGHOST:$PGPORT did not answer within ${WAIT_SECONDS:-600}s: $(db_sql -c 'SELECT 1' 2>&1 | tr '\n' ' ')"
}

# db_dump FILE: pg_dump's custom format (one consistent snapshot of the database), uncompressed
# so that restic deduplicates it between backups and compresses it itself. The archive is then
# read back (pg_restore --list), so a truncated dump fails here and not at restore time.
db_dump() {
  if ! pg_dump -Fc -Z 0 --exclude-table="public.$MARKER_TABLE" -f "$1" 2>"$SK_TMP/dump.err"; then
    rm -f "$1"
    sk_die "$SK_FAILED" dump_failed "pg_dump of $PGDATABASE at $PGHOST:$PGPORT failed: $(tr '\n' ' ' <"$SK_TMP/dump.err")"
  fi
  if ! pg_restore --list "$1" >/dev/null 2>"$SK_TMP/dump.err"; then
    rm -f "$1"
    sk_die "$SK_FAILED" dump_failed "the dump of $PGDATABASE does not read back: $(tr '\n' ' ' <"$SK_TMP/dump.err")"
  fi
}

# db_load FILE: one transaction (all or nothing). --clean --if-exists drops the dump's objects
# first, so a resumed restore loads over its own earlier attempt; objects are owned by PGUSER.
db_load() {
  if ! pg_restore --single-transaction --exit-on-error --clean --if-exists --no-owner --no-privileges \
    -d "$PGDATABASE" "$1" 2>"$SK_TMP/load.err"; then
    sk_die "$SK_FAILED" load_failed "loading the dump into $PGDATABASE failed: $(tr '\n' ' ' <"$SK_TMP/load.err")"
  fi
}

# Tables (and views, sequences...) of the store's schema other than the marker table.
db_table_count() {
  db_sql -c "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
               AND c.relname <> '$MARKER_TABLE'"
}

# Prints 1 when the marker table exists, else 0.
db_marker_exists() {
  db_sql -c "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relname = '$MARKER_TABLE'" ||
    sk_die "$SK_FAILED" marker_failed "cannot look for the marker table $MARKER_TABLE"
}

db_marker_init() {
  db_sql -c "CREATE TABLE IF NOT EXISTS public.$MARKER_TABLE (
    key text PRIMARY KEY, value text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())" ||
    sk_die "$SK_FAILED" marker_failed "cannot create the marker table $MARKER_TABLE"
}

# db_marker_get KEY (a constant of these scripts).
db_marker_get() {
  db_sql -v k="$1" <<SQL || sk_die "$SK_FAILED" marker_failed "cannot read the marker $1"
SELECT value FROM public.$MARKER_TABLE WHERE key = :'k';
SQL
}

# db_marker_set KEY=VALUE...: one transaction; values are psql variables, quoted by psql.
db_marker_set() {
  : >"$SK_TMP/marker.sql"
  sk_i=0
  for sk_pair in "$@"; do
    sk_i=$((sk_i + 1))
    set -- "$@" -v "k$sk_i=${sk_pair%%=*}" -v "v$sk_i=${sk_pair#*=}"
    printf "INSERT INTO public.%s (key, value) VALUES (:'k%s', :'v%s') ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();\n" \
      "$MARKER_TABLE" "$sk_i" "$sk_i" >>"$SK_TMP/marker.sql"
  done
  shift "$sk_i"
  db_sql -1 "$@" -f "$SK_TMP/marker.sql" || sk_die "$SK_FAILED" marker_failed "cannot write the restore marker"
}
