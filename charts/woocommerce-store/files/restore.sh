#!/bin/sh
# storekeeper WooCommerce restore, in steps (one container each; see backup-lib.sh):
#   restore.sh check     MariaDB image: wait for the database, read the restore marker, decide
#   restore.sh fetch     restic image: the snapshot's dump and wp-content (into FILES_DIR)
#   restore.sh load      MariaDB image: marker state=restoring, then load the dump
#   restore.sh rewrite   wordpress:cli image: wp search-replace of the old store URL for STORE_URL
#   restore.sh finish    MariaDB (or wordpress:cli) image: marker state=done
#   restore.sh all       every step in order, where every tool is installed
# Inputs are environment variables only (README.md, "Backups"); exit codes in backup-lib.sh.
set -eu

here="$(dirname "$0")"
# shellcheck source=/dev/null # sibling files, each checked on its own
. "$here/backup-lib.sh"
# shellcheck source=/dev/null
. "$here/backup-db.sh"

# The official WordPress image has no wp-cli: like the setup Job (setup.sh), this step runs in the
# wordpress:cli image against the WordPress volume (WP_PATH), whose wp-config.php reads the
# database settings from the WORDPRESS_DB_* environment. Serialized PHP values are rewritten
# correctly by wp search-replace (a plain SQL replace would corrupt their lengths); every table
# with the prefix is covered (WooCommerce's order tables are not registered with WordPress);
# GUIDs are left alone, as the WordPress handbook advises.
rewrite() {
  sk_step rewrite
  sk_restore_settings
  if [ "$(sk_decision)" = skip ]; then
    sk_log "restored before; nothing to rewrite"
    return 0
  fi
  old="$(cat "$RESTORE_WORK/source_url")"
  sk_valid "the snapshot's store URL" "$old" 'https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?' 'scheme://host[:port]'
  if [ "$old" = "$STORE_URL" ]; then
    sk_log "same URL as the snapshot ($old): nothing to rewrite"
    return 0
  fi
  WP_PATH="${WP_PATH:-/var/www/html}"
  sk_wait_for "$WP_PATH/wp-config.php" "${WAIT_SECONDS:-600}" test -s "$WP_PATH/wp-config.php" ||
    sk_die "$SK_UNREACHABLE" files_not_ready "gave up waiting for $WP_PATH/wp-config.php"
  # The URL as recorded, then the same host under the other scheme (mixed http/https content).
  case $old in
    http://*) other="https://${old#http://}" ;;
    *) other="http://${old#https://}" ;;
  esac
  for from in "$old" "$other"; do
    [ "$from" != "$STORE_URL" ] || continue
    sk_log "wp search-replace $from -> $STORE_URL"
    wp --path="$WP_PATH" --no-color search-replace "$from" "$STORE_URL" --all-tables-with-prefix \
      --skip-columns=guid --skip-plugins --skip-themes --report-changed-only ||
      sk_die "$SK_FAILED" rewrite_failed "wp search-replace $from -> $STORE_URL failed"
  done
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
