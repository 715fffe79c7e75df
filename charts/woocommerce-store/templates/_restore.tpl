{{/*
The restore path of the setup Job (backup.restore.enabled: storekeeper sets it for a store's
first install from `restore_from`). restore.sh's five steps run as init containers before the
wp-cli setup, because the restore refuses a database that holds tables (and `wp core install`
would create them): check (MariaDB image) -> fetch (restic image: the dump, and wp-content into
the WordPress volume) -> load (MariaDB) -> rewrite (wordpress:cli: wp search-replace of the old
URL for this store's) -> finish (MariaDB). The marker table `storekeeper_restore` records the
snapshot, so a later run of this Job (an upgrade renders it again only if restore is still set;
a retry) never restores twice: `check` decides `skip` for a store restored once.
See docs/backups.md for the steps, variables and exit codes.
*/}}

{{- define "woo.restoreEnv" -}}
{{- $b := .Values.backup -}}
- {name: STORE_NAME, value: {{ .Values.store.name | default .Release.Name | quote }}}
- {name: STORE_URL, value: {{ printf "%s://%s" (include "woo.scheme" .) (include "woo.host" .) | quote }}}
- {name: RESTORE_FROM_STORE, value: {{ required "backup.restore.fromStore is required for a restore" $b.restore.fromStore | quote }}}
- {name: RESTORE_SNAPSHOT, value: {{ $b.restore.snapshot | default "latest" | quote }}}
- {name: RESTORE_WORK, value: /restore}
- {name: WAIT_SECONDS, value: {{ .Values.setup.waitSeconds | toString | quote }}}
- {name: RESULT_FILE, value: /dev/termination-log}
{{- end -}}

{{- define "woo.restoreDbEnv" -}}
- {name: DB_HOST, value: {{ printf "%s-mariadb" (include "woo.fullname" .) | quote }}}
- {name: DB_PORT, value: "3306"}
- {name: DB_NAME, value: {{ .Values.mariadb.database | quote }}}
- {name: DB_USER, value: {{ .Values.mariadb.user | quote }}}
{{ include "woo.secretEnv" (dict "ctx" . "env" "DB_PASSWORD" "key" "db-password") }}
{{- end -}}

{{/* One database step of the restore: (dict "ctx" $ "step" "check"). */}}
{{- define "woo.restoreDbStep" -}}
{{- with .ctx -}}
- name: restore-{{ $.step }}
  image: {{ include "woo.image" .Values.image.mariadb }}
  imagePullPolicy: {{ .Values.image.mariadb.pullPolicy }}
  command: ["/bin/sh", "/backup-scripts/restore.sh", {{ $.step | quote }}]
  securityContext:
    {{- include "woo.containerSecurityContext" (dict "uid" 999) | nindent 4 }}
  env:
    {{- include "woo.restoreEnv" . | nindent 4 }}
    {{- include "woo.restoreDbEnv" . | nindent 4 }}
  resources:
    {{- toYaml .Values.backup.resources.dump | nindent 4 }}
  volumeMounts:
    - {name: backup-scripts, mountPath: /backup-scripts, readOnly: true}
    - {name: restore, mountPath: /restore}
    - {name: tmp, mountPath: /tmp}
{{- end -}}
{{- end -}}

{{- define "woo.restoreInitContainers" -}}
{{- $b := .Values.backup -}}
{{ include "woo.restoreDbStep" (dict "ctx" . "step" "check") }}
- name: restore-fetch
  image: {{ include "woo.image" $b.image }}
  imagePullPolicy: {{ $b.image.pullPolicy }}
  command: ["/bin/sh", "/backup-scripts/restore.sh", "fetch"]
  securityContext:
    {{- include "woo.containerSecurityContext" (dict "uid" 33) | nindent 4 }}
  # RESTIC_PASSWORD and the backend's credentials (the copy of the operator's backup Secret).
  envFrom:
    - secretRef:
        name: {{ $b.existingSecret | quote }}
  env:
    {{- include "woo.restoreEnv" . | nindent 4 }}
    - {name: RESTIC_REPOSITORY, value: {{ required "backup.restore.repository is required for a restore" $b.restore.repository | quote }}}
    - {name: FILES_DIR, value: /var/www/html/wp-content}
    # The WordPress image copies WordPress into its volume on first start; wait for that copy
    # so it cannot land over the restored wp-content.
    - {name: WAIT_FOR_FILE, value: /var/www/html/wp-includes/version.php}
    - {name: RESTIC_LOCK_WAIT, value: {{ $b.lockWait | quote }}}
    - {name: RESTIC_PROBE_TIMEOUT, value: {{ $b.probeTimeoutSeconds | toString | quote }}}
    - {name: HOME, value: /tmp}
    - {name: RESTIC_CACHE_DIR, value: /tmp/restic-cache}
  resources:
    {{- toYaml $b.resources.restic | nindent 4 }}
  volumeMounts:
    - {name: backup-scripts, mountPath: /backup-scripts, readOnly: true}
    - {name: restore, mountPath: /restore}
    - {name: html, mountPath: /var/www/html}
    - {name: tmp, mountPath: /tmp}
    {{- if $b.repositoryVolume }}
    # Read-write: restic takes a (shared) lock in the repository while it reads.
    - {name: repository, mountPath: {{ $b.repositoryMountPath | quote }}}
    {{- end }}
{{ include "woo.restoreDbStep" (dict "ctx" . "step" "load") }}
- name: restore-rewrite
  image: {{ include "woo.image" .Values.image.cli }}
  imagePullPolicy: {{ .Values.image.cli.pullPolicy }}
  command: ["/bin/sh", "/backup-scripts/restore.sh", "rewrite"]
  workingDir: /var/www/html
  securityContext:
    {{- include "woo.containerSecurityContext" (dict "uid" 33) | nindent 4 }}
  env:
    - {name: HOME, value: /tmp}
    - {name: WP_CLI_CACHE_DIR, value: /tmp/wp-cli-cache}
    - {name: WP_PATH, value: /var/www/html}
    {{- include "woo.wordpressEnv" . | nindent 4 }}
    {{- include "woo.restoreEnv" . | nindent 4 }}
  resources:
    {{- toYaml .Values.setup.resources | nindent 4 }}
  volumeMounts:
    - {name: backup-scripts, mountPath: /backup-scripts, readOnly: true}
    - {name: restore, mountPath: /restore}
    - {name: html, mountPath: /var/www/html}
    - {name: tmp, mountPath: /tmp}
{{ include "woo.restoreDbStep" (dict "ctx" . "step" "finish") }}
{{- end -}}

{{/* The restore's volumes: its work directory, the backup scripts, a local repository. */}}
{{- define "woo.restoreVolumes" -}}
{{- $b := .Values.backup -}}
- name: restore
  emptyDir:
    sizeLimit: {{ (include "woo.resources" . | fromYaml).storage.db | quote }}
- name: backup-scripts
  configMap:
    name: {{ include "woo.fullname" . }}-backup-scripts
{{- with $b.repositoryVolume }}
- name: repository
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
