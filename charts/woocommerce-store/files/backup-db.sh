# shellcheck shell=sh
# storekeeper WooCommerce backup/restore, the MariaDB side: sourced by backup.sh and restore.sh
# after restic-lib.sh. Runs where the `mariadb` and `mariadb-dump` clients are (the MariaDB image;
# the wordpress:cli image has the client too).
#
# Connection: DB_HOST, DB_PORT (3306), DB_NAME, DB_USER, DB_PASSWORD. The password reaches the
# client as MYSQL_PWD in the client's own environment: never on a command line, never in a file.

# Read by backup-lib.sh. The restore marker (README.md, "Backups") is key/value rows in
# MARKER_TABLE of the store's database; dumps leave it out, so a clone of a restored store starts
# without its source's history.
# shellcheck disable=SC2034
{
  ENGINE=woocommerce
  DUMP_FILE=database.sql
  MARKER_TABLE=storekeeper_restore
}

db_settings() {
  sk_require DB_HOST DB_NAME DB_USER DB_PASSWORD
  sk_valid DB_HOST "$DB_HOST" '[A-Za-z0-9.-]{1,253}' 'a host name or address'
  DB_PORT="${DB_PORT:-3306}"
  sk_valid DB_PORT "$DB_PORT" '[0-9]{1,5}' 'a port number'
  sk_valid DB_NAME "$DB_NAME" '[A-Za-z0-9_]{1,64}' 'letters, digits and _'
  sk_valid DB_USER "$DB_USER" '[A-Za-z0-9_.-]{1,80}' 'letters, digits and _.-'
}

# db_sql ARGS...: the mariadb client on DB_NAME, tab-separated output without headers.
db_sql() {
  MYSQL_PWD="$DB_PASSWORD" mariadb --no-defaults --host="$DB_HOST" --port="$DB_PORT" --user="$DB_USER" \
    --database="$DB_NAME" --batch --skip-column-names --default-character-set=utf8mb4 "$@"
}

# db_literal VALUE: VALUE as a hex string literal, so no byte of it is ever parsed as SQL.
db_literal() {
  printf "CONVERT(X'%s' USING utf8mb4)" "$(printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n')"
}

db_wait() {
  sk_wait_for "database $DB_NAME at $DB_HOST:$DB_PORT" "${WAIT_SECONDS:-600}" db_sql -e 'SELECT 1' ||
    sk_die "$SK_UNREACHABLE" database_unreachable \
      "database $DB_NAME at $DB_HOST:$DB_PORT did not answer within ${WAIT_SECONDS:-600}s: $(db_sql -e 'SELECT 1' 2>&1 | tr '\n' ' ')"
}

# db_dump FILE: a consistent dump (--single-transaction: an InnoDB snapshot, the shop keeps
# selling) of DB_NAME without the marker table. Dies on any error or a truncated dump.
db_dump() {
  if ! MYSQL_PWD="$DB_PASSWORD" mariadb-dump --no-defaults --host="$DB_HOST" --port="$DB_PORT" \
    --user="$DB_USER" --single-transaction --quick --hex-blob --routines --triggers --events \
    --skip-dump-date --default-character-set=utf8mb4 --ignore-table="$DB_NAME.$MARKER_TABLE" \
    "$DB_NAME" >"$1" 2>"$SK_TMP/dump.err"; then
    rm -f "$1"
    sk_die "$SK_FAILED" dump_failed "mariadb-dump of $DB_NAME at $DB_HOST:$DB_PORT failed: $(tr '\n' ' ' <"$SK_TMP/dump.err")"
  fi
  # A dump that stopped half-way lacks the trailer the client writes last.
  if ! tail -n 1 "$1" | grep -q '^-- Dump completed'; then
    rm -f "$1"
    sk_die "$SK_FAILED" dump_failed "the dump of $DB_NAME is truncated (no '-- Dump completed' trailer)"
  fi
}

# db_load FILE: loads the dump into DB_NAME (every table it holds is dropped and recreated).
db_load() {
  if ! db_sql <"$1" 2>"$SK_TMP/load.err"; then
    sk_die "$SK_FAILED" load_failed "loading the dump into $DB_NAME failed: $(tr '\n' ' ' <"$SK_TMP/load.err")"
  fi
}

# Tables of the store's database other than the marker table.
db_table_count() {
  db_sql -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name <> '$MARKER_TABLE'"
}

# Prints 1 when the marker table exists, else 0.
db_marker_exists() {
  db_sql -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = '$MARKER_TABLE'" ||
    sk_die "$SK_FAILED" marker_failed "cannot look for the marker table $MARKER_TABLE"
}

db_marker_init() {
  db_sql -e "CREATE TABLE IF NOT EXISTS $MARKER_TABLE (
    k VARCHAR(64) NOT NULL PRIMARY KEY,
    v TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
  ) DEFAULT CHARSET=utf8mb4" || sk_die "$SK_FAILED" marker_failed "cannot create the marker table $MARKER_TABLE"
}

# db_marker_get KEY (a constant of these scripts).
db_marker_get() {
  db_sql -e "SELECT v FROM $MARKER_TABLE WHERE k = '$1'" || sk_die "$SK_FAILED" marker_failed "cannot read the marker $1"
}

# db_marker_set KEY=VALUE...: one transaction.
db_marker_set() {
  sk_sql="START TRANSACTION;"
  for sk_pair in "$@"; do
    sk_sql="$sk_sql REPLACE INTO $MARKER_TABLE (k, v) VALUES ('${sk_pair%%=*}', $(db_literal "${sk_pair#*=}"));"
  done
  db_sql -e "$sk_sql COMMIT;" || sk_die "$SK_FAILED" marker_failed "cannot write the restore marker"
}
