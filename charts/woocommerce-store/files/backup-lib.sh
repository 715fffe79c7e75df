# shellcheck shell=sh
# storekeeper backup/restore library, sourced by backup.sh and restore.sh of both store charts.
# The copies in charts/woocommerce-store/files and charts/medusa-store/files are identical (a test
# checks). POSIX sh: it runs under dash (database images) and busybox ash (the restic image).
# The engine's backup-db.sh, sourced next, provides ENGINE, DUMP_FILE and the db_* functions.
#
# Everything comes from the environment or from files; no value is ever evaluated as code (the
# one `eval` reads a variable whose name is a constant of these scripts), and every value that
# reaches a command line is validated first (see sk_valid).

# Exit codes of backup.sh and restore.sh (the daemon maps them to reasons; keep in sync with the
# README's "Backups" section). 0 = done (for restore: also "restored earlier, nothing to do").
# shellcheck disable=SC2034 # some codes are used only by the engine scripts
{
  SK_FAILED=1      # failed; the message says why
  SK_USAGE=2       # bad or missing input (environment variable, step name)
  SK_INCOMPLETE=3  # backup: a snapshot was saved but restic could not read some files
  SK_REFUSED=4     # restore: the target database holds data and no restore marker
  SK_LOCKED=5      # the repository stayed locked by another restic for RESTIC_LOCK_WAIT
  SK_DENIED=6      # wrong repository password (or no key for it)
  SK_NOT_FOUND=7   # restore: no such repository or snapshot
  SK_UNREACHABLE=8 # the database or the repository could not be reached in time
  SK_RETENTION=9   # backup: the snapshot was saved, applying retention failed
}

SK_TAG=storekeeper
SK_NL='
'

# sk_step NAME: the step named in every log line.
sk_step() { SK_STEP=$1; }

sk_log() {
  printf '%s storekeeper-%s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${SK_STEP:-backup}" "$*" >&2
}

# sk_result KEY=VALUE...: records the outcome for the caller (RESULT_FILE, e.g. the container's
# /dev/termination-log, which Kubernetes shows in the pod status). Keys: result, reason, snapshot.
sk_result() {
  [ -n "${RESULT_FILE:-}" ] || return 0
  printf '%s\n' "$@" >"$RESULT_FILE" 2>/dev/null || sk_log "warning: cannot write $RESULT_FILE"
}

# sk_die CODE REASON MESSAGE: logs, records result=failed and the bounded reason word, exits.
sk_die() {
  sk_code=$1 sk_reason=$2
  shift 2
  sk_log "error: $*"
  sk_result "result=failed" "reason=$sk_reason" "exit_code=$sk_code" ${SK_SNAPSHOT:+"snapshot=$SK_SNAPSHOT"}
  exit "$sk_code"
}

# sk_valid NAME VALUE EXTENDED-REGEX HINT: VALUE must be one line matching the whole regex.
sk_valid() {
  case $2 in *"$SK_NL"*) sk_die "$SK_USAGE" invalid_input "$1 must be a single line ($4)" ;; esac
  printf '%s\n' "$2" | grep -Eqx "$3" || sk_die "$SK_USAGE" invalid_input "$1 is invalid: $4"
}

# sk_require NAME...: each variable must be set and non-empty.
sk_require() {
  for sk_var in "$@"; do
    eval "sk_val=\${$sk_var:-}"
    [ -n "$sk_val" ] || sk_die "$SK_USAGE" invalid_input "$sk_var is not set"
  done
}

sk_valid_store() {
  sk_valid "$1" "$2" '[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?' 'a DNS label: lowercase letters, digits and -'
}

sk_valid_url() {
  sk_valid "$1" "$2" 'https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?' 'scheme://host[:port], no path'
}

# The shared settings of every restic step, validated once.
sk_restic_settings() {
  sk_require STORE_NAME
  sk_valid_store STORE_NAME "$STORE_NAME"
  RESTIC_LOCK_WAIT="${RESTIC_LOCK_WAIT:-5m}"
  sk_valid RESTIC_LOCK_WAIT "$RESTIC_LOCK_WAIT" '[0-9]{1,5}[smh]' 'a duration such as 30s, 5m or 1h'
  RESTIC_PROBE_TIMEOUT="${RESTIC_PROBE_TIMEOUT:-120}"
  sk_valid RESTIC_PROBE_TIMEOUT "$RESTIC_PROBE_TIMEOUT" '[0-9]{1,5}' 'seconds'
  if [ -z "${RESTIC_REPOSITORY:-}" ] && [ -z "${RESTIC_REPOSITORY_FILE:-}" ]; then
    sk_die "$SK_USAGE" invalid_input "RESTIC_REPOSITORY (or RESTIC_REPOSITORY_FILE) is not set"
  fi
  if [ -z "${RESTIC_PASSWORD:-}" ] && [ -z "${RESTIC_PASSWORD_FILE:-}" ] && [ -z "${RESTIC_PASSWORD_COMMAND:-}" ]; then
    sk_die "$SK_USAGE" invalid_input "RESTIC_PASSWORD (or RESTIC_PASSWORD_FILE) is not set"
  fi
  sk_tmpdir
  sk_restic_version
}

# restic >= 0.17.1: exit codes 10/11/12, `--retry-lock`, `restore --delete`, `snapshot:subfolder`.
sk_restic_version() {
  sk_version="$(restic version 2>/dev/null | sed -n 's/^restic \([0-9][0-9]*\)\.\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2 \3/p')"
  [ -n "$sk_version" ] || sk_die "$SK_FAILED" restic_missing "restic is not installed or did not print its version"
  # shellcheck disable=SC2086 # three numbers, split on purpose
  set -- $sk_version
  if [ "$1" -eq 0 ] && { [ "$2" -lt 17 ] || { [ "$2" -eq 17 ] && [ "$3" -lt 1 ]; }; }; then
    sk_die "$SK_FAILED" restic_too_old "restic $1.$2.$3 is too old: 0.17.1 or newer is needed"
  fi
}

# The repository location without credentials, for messages.
sk_repo_label() {
  if [ -n "${RESTIC_REPOSITORY:-}" ]; then
    printf '%s' "$RESTIC_REPOSITORY" | sed 's#//[^/@]*@#//***@#'
  else
    printf 'the repository in %s' "$RESTIC_REPOSITORY_FILE"
  fi
}

# sk_restic_fail RC WHAT: dies with the code and reason that restic's exit code RC stands for.
sk_restic_fail() {
  sk_tail="$(tail -n 5 "$SK_TMP/restic.err" 2>/dev/null | tr '\n' ' ')"
  case $1 in
    10) sk_die "$SK_NOT_FOUND" repository_missing "$2: there is no repository at $(sk_repo_label)" ;;
    11) sk_die "$SK_LOCKED" repository_locked "$2: $(sk_repo_label) stayed locked for $RESTIC_LOCK_WAIT: $sk_tail" ;;
    12) sk_die "$SK_DENIED" wrong_password "$2: wrong password for $(sk_repo_label) (RESTIC_PASSWORD)" ;;
    124) sk_die "$SK_UNREACHABLE" repository_unreachable "$2: $(sk_repo_label) did not answer within ${RESTIC_PROBE_TIMEOUT}s: $sk_tail" ;;
    130) sk_die "$SK_FAILED" interrupted "$2: restic was interrupted" ;;
    *) sk_die "$SK_FAILED" restic_failed "$2 (restic exit code $1): $sk_tail" ;;
  esac
}

# sk_restic ARGS...: runs restic with stderr kept in $SK_TMP/restic.err (and echoed); sets sk_rc.
sk_restic() {
  if restic "$@" 2>"$SK_TMP/restic.err"; then sk_rc=0; else sk_rc=$?; fi
  if [ -s "$SK_TMP/restic.err" ]; then head -n 50 "$SK_TMP/restic.err" >&2; fi
}

# sk_open_repository init|no-init: the repository must open. It is initialised only when restic
# says it does not exist (exit code 10) and init is allowed; any other error (unreachable, wrong
# password, permissions) is reported and never answered with an init. restic retries a failing
# backend for up to 15 minutes, so this first contact is bounded by RESTIC_PROBE_TIMEOUT.
sk_open_repository() {
  sk_started="$(date +%s)"
  if timeout "$RESTIC_PROBE_TIMEOUT" restic cat config >/dev/null 2>"$SK_TMP/restic.err"; then
    return 0
  else
    sk_rc=$?
  fi
  # GNU timeout exits 124, busybox's passes on the killed restic's status: go by the clock.
  if [ $(($(date +%s) - sk_started)) -ge "$RESTIC_PROBE_TIMEOUT" ]; then sk_rc=124; fi
  if [ "$sk_rc" -ne 10 ] || [ "$1" != init ]; then
    sk_restic_fail "$sk_rc" "cannot open the repository"
  fi
  sk_log "no repository at $(sk_repo_label) yet: initialising it"
  sk_restic init
  if [ "$sk_rc" -ne 0 ]; then
    # Another job may have initialised it meanwhile; then it opens now.
    timeout "$RESTIC_PROBE_TIMEOUT" restic cat config >/dev/null 2>&1 ||
      sk_restic_fail "$sk_rc" "cannot initialise the repository"
  fi
}

# Removes stale locks only (older than 30 minutes, or from a dead process on this host): a job
# that was killed must not block every later one. Live locks are kept.
sk_unlock_stale() {
  sk_restic unlock
  [ "$sk_rc" -eq 0 ] || sk_log "warning: restic unlock failed (exit code $sk_rc); continuing"
}

# sk_snapshot_ids: the full snapshot ids in restic's JSON on stdin, oldest first.
sk_snapshot_ids() {
  # shellcheck disable=SC2020 # five single characters, each to a newline
  tr ',{}[]' '\n\n\n\n\n' | sed -n 's/^"id":"\([0-9a-f]\{64\}\)"$/\1/p'
}

# sk_meta_get FILE KEY: the value of KEY in a key=value file (never sourced).
sk_meta_get() {
  sed -n "s/^$2=//p" "$1" | head -n 1
}

# sk_wait_for WHAT SECONDS COMMAND...: retries COMMAND every 2 seconds until it succeeds.
sk_wait_for() {
  sk_what=$1 sk_limit=$2
  shift 2
  sk_waited=0
  until "$@" >/dev/null 2>&1; do
    if [ "$sk_waited" -ge "$sk_limit" ]; then
      return 1
    fi
    sleep 2
    sk_waited=$((sk_waited + 2))
  done
  sk_log "$sk_what: ready"
}

sk_tmpdir() {
  SK_TMP="$(mktemp -d)"
  # shellcheck disable=SC2064 # expand now: the path is fixed
  trap "rm -rf '$SK_TMP'" EXIT
}

# ---------------------------------------------------------------------------------------------
# Backup: the dump step (database image). Writes $BACKUP_ROOT/db/$DUMP_FILE, then
# $BACKUP_ROOT/db/storekeeper.meta (key=value lines; its presence means the dump is complete).

sk_backup_dump() {
  sk_step dump
  sk_require STORE_NAME STORE_URL
  sk_valid_store STORE_NAME "$STORE_NAME"
  sk_valid_url STORE_URL "$STORE_URL"
  SOURCE_REVISION="${SOURCE_REVISION:-unknown}"
  sk_valid SOURCE_REVISION "$SOURCE_REVISION" '[A-Za-z0-9._:/@+-]{1,128}' 'letters, digits and ._:/@+- only'
  BACKUP_ROOT="${BACKUP_ROOT:-/backup}"
  sk_tmpdir
  db_settings
  sk_db="$BACKUP_ROOT/db"
  mkdir -p "$sk_db" || sk_die "$SK_FAILED" dump_failed "cannot create $sk_db"
  rm -f "$sk_db/storekeeper.meta" "$sk_db/$DUMP_FILE" "$sk_db/$DUMP_FILE.partial"
  sk_log "dumping database $DB_NAME of store $STORE_NAME"
  db_dump "$sk_db/$DUMP_FILE.partial"
  mv "$sk_db/$DUMP_FILE.partial" "$sk_db/$DUMP_FILE"
  sk_files=no
  if [ "${BACKUP_FILES:-true}" = true ]; then sk_files=yes; fi
  {
    echo "format=1"
    echo "engine=$ENGINE"
    echo "store=$STORE_NAME"
    echo "url=$STORE_URL"
    echo "revision=$SOURCE_REVISION"
    echo "dump=$DUMP_FILE"
    echo "files=$sk_files"
    echo "created=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$sk_db/storekeeper.meta.partial"
  mv "$sk_db/storekeeper.meta.partial" "$sk_db/storekeeper.meta"
  sk_log "dump complete: $(wc -c <"$sk_db/$DUMP_FILE" | tr -d ' ') bytes"
}

# ---------------------------------------------------------------------------------------------
# Backup: the upload step (restic image). Expects $BACKUP_ROOT/db (written by the dump step:
# storekeeper.meta plus the dump it names) and, unless BACKUP_FILES=false, $BACKUP_ROOT/files.

sk_backup_upload() {
  sk_step upload
  sk_restic_settings
  BACKUP_ROOT="${BACKUP_ROOT:-/backup}"
  SOURCE_REVISION="${SOURCE_REVISION:-unknown}"
  sk_valid SOURCE_REVISION "$SOURCE_REVISION" '[A-Za-z0-9._:/@+-]{1,128}' 'letters, digits and ._:/@+- only'
  for sk_keep in KEEP_DAILY KEEP_WEEKLY KEEP_MONTHLY; do
    eval "sk_val=\${$sk_keep:-0}"
    sk_valid "$sk_keep" "$sk_val" '[0-9]{1,4}' 'a number of snapshots (0 = this rule keeps none)'
  done
  case $BACKUP_ROOT in /*) ;; *) sk_die "$SK_USAGE" invalid_input "BACKUP_ROOT must be an absolute path" ;; esac
  sk_meta="$BACKUP_ROOT/db/storekeeper.meta"
  [ -s "$sk_meta" ] || sk_die "$SK_FAILED" dump_missing "no complete dump in $BACKUP_ROOT/db (did the dump step run?)"
  sk_dump="$(sk_meta_get "$sk_meta" dump)"
  [ -s "$BACKUP_ROOT/db/$sk_dump" ] || sk_die "$SK_FAILED" dump_missing "the dump $BACKUP_ROOT/db/$sk_dump is missing or empty"
  # What goes into the snapshot is what the dump step recorded (from BACKUP_FILES).
  set -- db
  if [ "$(sk_meta_get "$sk_meta" files)" = yes ]; then
    [ -d "$BACKUP_ROOT/files" ] || sk_die "$SK_FAILED" files_missing "$BACKUP_ROOT/files is not a directory"
    set -- db files
  fi

  sk_open_repository init
  sk_unlock_stale
  cd "$BACKUP_ROOT" || sk_die "$SK_FAILED" files_missing "cannot enter $BACKUP_ROOT"
  sk_log "backing up $* of store $STORE_NAME (revision $SOURCE_REVISION) to $(sk_repo_label)"
  # Relative paths: the snapshot holds /db and /files whatever the mount points are. The host
  # name is the store (pods have random names), so retention groups all of a store's snapshots.
  sk_restic backup --json --quiet --host "$STORE_NAME" --tag "$SK_TAG" --tag "store=$STORE_NAME" \
    --tag "revision=$SOURCE_REVISION" --retry-lock "$RESTIC_LOCK_WAIT" \
    --exclude "$BACKUP_ROOT/files/lost+found" ${BACKUP_TIME:+--time "$BACKUP_TIME"} "$@" \
    >"$SK_TMP/backup.json"
  SK_SNAPSHOT="$(sed -n 's/.*"snapshot_id":"\([0-9a-f]\{64\}\)".*/\1/p' "$SK_TMP/backup.json" | tail -n 1)"
  case $sk_rc in
    0) ;;
    3)
      # The snapshot exists (with the whole dump, which is read first and was checked), but some
      # files were unreadable. Retention is not applied, so no complete snapshot is forgotten
      # because of an incomplete one.
      sk_log "error: snapshot $SK_SNAPSHOT is incomplete: restic could not read some files (above); retention not applied"
      sk_result "result=incomplete" "reason=incomplete" "exit_code=$SK_INCOMPLETE" "snapshot=$SK_SNAPSHOT"
      exit "$SK_INCOMPLETE"
      ;;
    *) sk_restic_fail "$sk_rc" "backup failed" ;;
  esac
  [ -n "$SK_SNAPSHOT" ] || sk_die "$SK_FAILED" restic_failed "restic reported success but no snapshot id"
  sk_log "saved snapshot $SK_SNAPSHOT"
  sk_forget
  sk_result "result=ok" "reason=ok" "exit_code=0" "snapshot=$SK_SNAPSHOT"
  sk_log "done: snapshot=$SK_SNAPSHOT store=$STORE_NAME"
}

# Retention over this store's snapshots only, grouped by host (= store) alone: the paths and the
# revision tag change over time and must not split the store into groups that each keep their own.
sk_forget() {
  if [ "${KEEP_DAILY:-0}" -eq 0 ] && [ "${KEEP_WEEKLY:-0}" -eq 0 ] && [ "${KEEP_MONTHLY:-0}" -eq 0 ]; then
    sk_log "retention: all keep_* are 0, keeping every snapshot"
    return 0
  fi
  set -- --keep-daily "${KEEP_DAILY:-0}" --keep-weekly "${KEEP_WEEKLY:-0}" --keep-monthly "${KEEP_MONTHLY:-0}"
  if [ "${BACKUP_PRUNE:-true}" = true ]; then set -- "$@" --prune; fi
  sk_log "retention: keep daily ${KEEP_DAILY:-0}, weekly ${KEEP_WEEKLY:-0}, monthly ${KEEP_MONTHLY:-0}"
  sk_restic forget --host "$STORE_NAME" --tag "store=$STORE_NAME" --group-by host \
    --retry-lock "$RESTIC_LOCK_WAIT" "$@" >"$SK_TMP/forget.out"
  [ "$sk_rc" -eq 0 ] && return 0
  sk_reason=retention_failed
  if [ "$sk_rc" -eq 11 ]; then sk_reason=repository_locked; fi
  sk_log "error: snapshot $SK_SNAPSHOT is saved, but applying retention failed (restic exit code $sk_rc)"
  sk_result "result=retention_failed" "reason=$sk_reason" "exit_code=$SK_RETENTION" "snapshot=$SK_SNAPSHOT"
  exit "$SK_RETENTION"
}

# ---------------------------------------------------------------------------------------------
# Restore, in steps (each its own container in a Job; `all` runs them in order):
#   check   (database image)  wait for the database; read the marker; decide fresh|resume|skip
#                             (writes nothing to the database)
#   fetch   (restic image)    resolve the snapshot; restore the dump and the files
#   load    (database image)  record state=restoring, then load the dump
#   rewrite (engine's tool)   replace the old store URL with the new one (restore.sh)
#   finish  (database image)  record state=done
# $RESTORE_WORK (an emptyDir shared by the containers) holds what the steps hand on: decision,
# snapshot, snapshot_time, source_url, and the dump under db/. The Job must use
# restartPolicy: Never, so that a retry starts over from `check` in a new pod (a fresh
# RESTORE_WORK, the dump loaded again before the URLs are rewritten again).
#
# The marker (the engine's MARKER_TABLE, key/value rows; never in a dump):
#   state=restoring|done, source_store, snapshot (full id), snapshot_time, source_url,
#   target_url, started_at, finished_at.
# A store is restored once: with state=done every later run is a no-op, whatever restore_from
# says now, because restoring again would discard the orders taken since. With no marker the
# database must be empty, or the restore is refused (exit 4): it never overwrites a live store.

sk_restore_settings() {
  RESTORE_WORK="${RESTORE_WORK:-/restore}"
  RESTORE_FROM_STORE="${RESTORE_FROM_STORE:-${STORE_NAME:-}}"
  RESTORE_SNAPSHOT="${RESTORE_SNAPSHOT:-latest}"
  sk_require STORE_NAME STORE_URL
  sk_valid_store STORE_NAME "$STORE_NAME"
  sk_valid_store RESTORE_FROM_STORE "$RESTORE_FROM_STORE"
  sk_valid_url STORE_URL "$STORE_URL"
  sk_valid RESTORE_SNAPSHOT "$RESTORE_SNAPSHOT" 'latest|[0-9a-f]{8,64}' '"latest" or a snapshot id (hex)'
  [ -d "$RESTORE_WORK" ] || sk_die "$SK_USAGE" invalid_input "RESTORE_WORK $RESTORE_WORK is not a directory"
}

sk_decision() {
  [ -s "$RESTORE_WORK/decision" ] || sk_die "$SK_USAGE" invalid_input "no $RESTORE_WORK/decision: run the check step first"
  cat "$RESTORE_WORK/decision"
}

# sk_resolve_snapshot: sets SK_SNAPSHOT to the full id of the snapshot to restore.
sk_resolve_snapshot() {
  if [ "$1" = resume ]; then
    set -- "$(cat "$RESTORE_WORK/snapshot")"
    sk_log "resuming the interrupted restore of snapshot $1"
  else
    set -- "$RESTORE_SNAPSHOT"
  fi
  # Only snapshots of the source store qualify, so an id from another store's repository (or
  # another store sharing one) is never restored by mistake.
  sk_restic snapshots --json --host "$RESTORE_FROM_STORE" --tag "store=$RESTORE_FROM_STORE" "$1" >"$SK_TMP/snapshots.json"
  [ "$sk_rc" -eq 0 ] || grep -q 'no matching ID\|no snapshot matched\|no snapshot found' "$SK_TMP/restic.err" ||
    sk_restic_fail "$sk_rc" "cannot list snapshots"
  SK_SNAPSHOT="$(sk_snapshot_ids <"$SK_TMP/snapshots.json" | tail -n 1)"
  [ -n "$SK_SNAPSHOT" ] ||
    sk_die "$SK_NOT_FOUND" snapshot_missing "no snapshot $1 of store $RESTORE_FROM_STORE in $(sk_repo_label)"
  if [ "$1" != latest ] && [ "${SK_SNAPSHOT#"$1"}" = "$SK_SNAPSHOT" ]; then
    sk_die "$SK_NOT_FOUND" snapshot_missing "snapshot $1 resolved to another snapshot, $SK_SNAPSHOT"
  fi
  tr ',' '\n' <"$SK_TMP/snapshots.json" | sed -n 's/^\[*{*"time":"\([^"]*\)".*/\1/p' | tail -n 1 >"$RESTORE_WORK/snapshot_time"
}

# sk_restore_fetch: restores the dump into $RESTORE_WORK/db and the files into FILES_DIR.
sk_restore_fetch() {
  sk_step fetch
  sk_restore_settings
  sk_restic_settings
  sk_decision="$(sk_decision)"
  if [ "$sk_decision" = skip ]; then
    sk_log "nothing to fetch: this store was restored before"
    return 0
  fi
  RESTORE_FROM_STORE="$(cat "$RESTORE_WORK/source_store")"
  sk_valid_store "recorded source store" "$RESTORE_FROM_STORE"
  sk_open_repository no-init
  sk_resolve_snapshot "$sk_decision"
  sk_log "restoring snapshot $SK_SNAPSHOT of store $RESTORE_FROM_STORE from $(sk_repo_label)"
  rm -rf "$RESTORE_WORK/db"
  sk_restic restore "$SK_SNAPSHOT:/db" --target "$RESTORE_WORK/db" --verify --retry-lock "$RESTIC_LOCK_WAIT"
  [ "$sk_rc" -eq 0 ] || sk_restic_fail "$sk_rc" "restoring the dump failed"
  sk_meta="$RESTORE_WORK/db/storekeeper.meta"
  [ -s "$sk_meta" ] || sk_die "$SK_FAILED" bad_snapshot "snapshot $SK_SNAPSHOT has no storekeeper.meta: not a storekeeper backup"
  sk_engine="$(sk_meta_get "$sk_meta" engine)"
  [ "$sk_engine" = "$ENGINE" ] ||
    sk_die "$SK_FAILED" bad_snapshot "snapshot $SK_SNAPSHOT is a backup of a ${sk_engine:-unknown} store, not $ENGINE"
  [ -s "$RESTORE_WORK/db/$(sk_meta_get "$sk_meta" dump)" ] || sk_die "$SK_FAILED" bad_snapshot "snapshot $SK_SNAPSHOT has no dump"
  sk_restore_files "$(sk_meta_get "$sk_meta" files)"
  sk_source_url="$(sk_meta_get "$sk_meta" url)"
  sk_valid_url "the snapshot's store URL" "$sk_source_url"
  printf '%s\n' "$sk_source_url" >"$RESTORE_WORK/source_url"
  printf '%s\n' "$SK_SNAPSHOT" >"$RESTORE_WORK/snapshot"
  sk_log "fetched snapshot $SK_SNAPSHOT"
}

# The files are made equal to the snapshot's (`--delete` removes what the snapshot lacks), so a
# repeated or resumed restore converges on the same tree. A volume's lost+found is left alone.
sk_restore_files() {
  if [ "$1" != yes ]; then
    sk_log "the snapshot holds no files"
    return 0
  fi
  sk_require FILES_DIR
  case $FILES_DIR in /*/*) ;; *) sk_die "$SK_USAGE" invalid_input "FILES_DIR must be an absolute path below a top-level directory" ;; esac
  [ -d "$FILES_DIR" ] || sk_die "$SK_USAGE" invalid_input "FILES_DIR $FILES_DIR is not a directory"
  if [ -n "${WAIT_FOR_FILE:-}" ]; then
    sk_wait_for "$WAIT_FOR_FILE" "${WAIT_SECONDS:-600}" test -e "$WAIT_FOR_FILE" ||
      sk_die "$SK_UNREACHABLE" files_not_ready "gave up waiting for $WAIT_FOR_FILE"
  fi
  sk_restic restore "$SK_SNAPSHOT:/files" --target "$FILES_DIR" --delete --verify \
    --exclude /lost+found --retry-lock "$RESTIC_LOCK_WAIT"
  [ "$sk_rc" -eq 0 ] || sk_restic_fail "$sk_rc" "restoring the files failed"
}

sk_now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# sk_decide RESULT...: writes the decision file (atomically) for the following steps.
sk_decide() {
  printf '%s\n' "$1" >"$RESTORE_WORK/decision.partial"
  mv "$RESTORE_WORK/decision.partial" "$RESTORE_WORK/decision"
}

# The database step settings of check, load and finish.
sk_restore_db_settings() {
  sk_step "$1"
  sk_restore_settings
  sk_tmpdir
  db_settings
}

# The marker's state, empty when there is no marker table (check writes nothing: a database it
# refuses stays exactly as it was).
sk_marker_state() {
  if [ "$(db_marker_exists)" = 1 ]; then db_marker_get state; fi
}

sk_restore_check() {
  sk_restore_db_settings check
  db_wait
  sk_state="$(sk_marker_state)"
  case $sk_state in
    done)
      sk_src="$(db_marker_get source_store)" SK_SNAPSHOT="$(db_marker_get snapshot)"
      sk_log "already restored from store $sk_src, snapshot $SK_SNAPSHOT, at $(db_marker_get finished_at): not restoring again"
      if [ "$sk_src" != "$RESTORE_FROM_STORE" ] ||
        { [ "$RESTORE_SNAPSHOT" != latest ] && [ "${SK_SNAPSHOT#"$RESTORE_SNAPSHOT"}" = "$SK_SNAPSHOT" ]; }; then
        sk_log "warning: now asked for store $RESTORE_FROM_STORE, snapshot $RESTORE_SNAPSHOT; a store is restored only once (restoring again would discard its newer orders)"
      fi
      sk_decide skip
      sk_result "result=skipped" "reason=already_restored" "exit_code=0" "snapshot=$SK_SNAPSHOT"
      ;;
    restoring)
      SK_SNAPSHOT="$(db_marker_get snapshot)"
      sk_valid "recorded snapshot" "$SK_SNAPSHOT" '[0-9a-f]{64}' 'a full snapshot id'
      sk_src="$(db_marker_get source_store)"
      if [ "$sk_src" != "$RESTORE_FROM_STORE" ]; then
        sk_log "warning: resuming the interrupted restore from store $sk_src (now asked for $RESTORE_FROM_STORE)"
        RESTORE_FROM_STORE=$sk_src
      fi
      printf '%s\n' "$SK_SNAPSHOT" >"$RESTORE_WORK/snapshot"
      printf '%s\n' "$sk_src" >"$RESTORE_WORK/source_store"
      sk_log "an earlier restore of snapshot $SK_SNAPSHOT was interrupted: resuming it"
      sk_decide resume
      ;;
    '')
      sk_refuse_if_not_empty
      printf '%s\n' "$RESTORE_FROM_STORE" >"$RESTORE_WORK/source_store"
      sk_log "database $DB_NAME is empty: restoring store $RESTORE_FROM_STORE, snapshot $RESTORE_SNAPSHOT"
      sk_decide fresh
      ;;
    *) sk_die "$SK_FAILED" marker_failed "unknown restore marker state '$sk_state' in $MARKER_TABLE" ;;
  esac
}

sk_refuse_if_not_empty() {
  sk_tables="$(db_table_count)" || sk_die "$SK_FAILED" database_failed "cannot list the tables of $DB_NAME"
  if [ "$sk_tables" -ne 0 ]; then
    sk_die "$SK_REFUSED" target_not_empty \
      "database $DB_NAME already holds $sk_tables tables and was never restored: refusing to restore over a live store (restore into a new store instead)"
  fi
}

sk_restore_load() {
  sk_restore_db_settings load
  [ "$(sk_decision)" != skip ] || { sk_log "nothing to load: restored before"; return 0; }
  SK_SNAPSHOT="$(cat "$RESTORE_WORK/snapshot" 2>/dev/null || true)"
  sk_valid "fetched snapshot" "$SK_SNAPSHOT" '[0-9a-f]{64}' 'a full snapshot id (did the fetch step run?)'
  sk_dump="$RESTORE_WORK/db/$(sk_meta_get "$RESTORE_WORK/db/storekeeper.meta" dump)"
  [ -s "$sk_dump" ] || sk_die "$SK_FAILED" dump_missing "no dump in $RESTORE_WORK/db"
  db_wait
  # Checked again right before the first write: the database may have changed since `check`.
  case "$(sk_marker_state)" in
    done) sk_die "$SK_FAILED" marker_failed "the store was restored meanwhile by another run" ;;
    restoring) ;;
    *) sk_refuse_if_not_empty ;;
  esac
  db_marker_init
  sk_source_url="$(cat "$RESTORE_WORK/source_url")"
  # The marker is written before the first change, so an interrupted load resumes with the same
  # snapshot instead of mixing two.
  db_marker_set "state=restoring" "source_store=$(cat "$RESTORE_WORK/source_store")" "snapshot=$SK_SNAPSHOT" \
    "snapshot_time=$(cat "$RESTORE_WORK/snapshot_time")" "source_url=$sk_source_url" "target_url=$STORE_URL" \
    "started_at=$(sk_now)"
  sk_log "loading the dump of snapshot $SK_SNAPSHOT into $DB_NAME"
  db_load "$sk_dump"
  sk_log "loaded"
}

sk_restore_finish() {
  sk_restore_db_settings finish
  if [ "$(sk_decision)" = skip ]; then
    sk_log "restored before; nothing to finish"
    return 0
  fi
  SK_SNAPSHOT="$(cat "$RESTORE_WORK/snapshot")"
  [ "$(sk_marker_state)" = restoring ] || sk_die "$SK_FAILED" marker_failed "finish without a load (marker state is not 'restoring')"
  [ "$(db_marker_get snapshot)" = "$SK_SNAPSHOT" ] || sk_die "$SK_FAILED" marker_failed "the marker names another snapshot than $SK_SNAPSHOT"
  db_marker_set "state=done" "finished_at=$(sk_now)"
  sk_result "result=restored" "reason=ok" "exit_code=0" "snapshot=$SK_SNAPSHOT"
  sk_log "done: restored snapshot $SK_SNAPSHOT of store $(db_marker_get source_store) into $STORE_NAME"
}
