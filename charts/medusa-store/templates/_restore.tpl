{{/*
The restore path of the setup Job (backup.restore.enabled: storekeeper sets it for a store's
first install from `restore_from`). restore.sh's five steps run as the first init containers,
before `prepare` (which creates the storekeeper_setup marker table) and the migrations, because
the restore refuses a database that holds tables: check -> fetch (restic image: the dump, and
the uploads into their volume) -> load (pg_restore in one transaction) -> rewrite (the old URL
replaced by this store's in the stored values; MEDUSA_BACKEND_URL and the CORS origins are the
chart's own environment) -> finish. The restored database brings the source's setup markers, so
the seed does not run again and the source's admin accounts come with the data. The marker table
storekeeper_restore records the snapshot: a store is restored once (docs/backups.md).
*/}}

{{- define "medusa.restoreEnv" -}}
{{- $b := .Values.backup -}}
- {name: STORE_NAME, value: {{ .Values.store.name | default .Release.Name | quote }}}
- {name: STORE_URL, value: {{ include "medusa.url" . | quote }}}
- {name: RESTORE_FROM_STORE, value: {{ required "backup.restore.fromStore is required for a restore" $b.restore.fromStore | quote }}}
- {name: RESTORE_SNAPSHOT, value: {{ $b.restore.snapshot | default "latest" | quote }}}
- {name: RESTORE_WORK, value: /restore}
- {name: WAIT_SECONDS, value: {{ .Values.setup.waitSeconds | toString | quote }}}
- {name: RESULT_FILE, value: /dev/termination-log}
{{- end -}}

{{/* One database step of the restore: (dict "ctx" $ "step" "check"). */}}
{{- define "medusa.restoreDbStep" -}}
{{- with .ctx -}}
- name: restore-{{ $.step }}
  image: {{ include "medusa.image" .Values.postgres.image }}
  imagePullPolicy: {{ .Values.postgres.image.pullPolicy }}
  command: ["/bin/sh", "/backup-scripts/restore.sh", {{ $.step | quote }}]
  securityContext:
    {{- include "medusa.containerSecurityContext" (dict "uid" 999) | nindent 4 }}
  env:
    {{- include "medusa.pgEnv" . | nindent 4 }}
    {{- include "medusa.restoreEnv" . | nindent 4 }}
  resources:
    {{- toYaml .Values.backup.resources.dump | nindent 4 }}
  volumeMounts:
    - {name: backup-scripts, mountPath: /backup-scripts, readOnly: true}
    - {name: restore, mountPath: /restore}
    - {name: tmp, mountPath: /tmp}
{{- end -}}
{{- end -}}

{{- define "medusa.restoreInitContainers" -}}
{{- $b := .Values.backup -}}
{{ include "medusa.restoreDbStep" (dict "ctx" . "step" "check") }}
- name: restore-fetch
  image: {{ include "medusa.image" $b.image }}
  imagePullPolicy: {{ $b.image.pullPolicy }}
  command: ["/bin/sh", "/backup-scripts/restore.sh", "fetch"]
  securityContext:
    {{- include "medusa.containerSecurityContext" (dict "uid" (int .Values.image.uid)) | nindent 4 }}
  # RESTIC_PASSWORD and the backend's credentials (the copy of the operator's backup Secret).
  envFrom:
    - secretRef:
        name: {{ $b.existingSecret | quote }}
  env:
    {{- include "medusa.restoreEnv" . | nindent 4 }}
    - {name: RESTIC_REPOSITORY, value: {{ required "backup.restore.repository is required for a restore" $b.restore.repository | quote }}}
    {{- if .Values.persistence.uploads }}
    - {name: FILES_DIR, value: /app/static}
    {{- end }}
    - {name: RESTIC_LOCK_WAIT, value: {{ $b.lockWait | quote }}}
    - {name: RESTIC_PROBE_TIMEOUT, value: {{ $b.probeTimeoutSeconds | toString | quote }}}
    - {name: HOME, value: /tmp}
    - {name: RESTIC_CACHE_DIR, value: /tmp/restic-cache}
  resources:
    {{- toYaml $b.resources.restic | nindent 4 }}
  volumeMounts:
    - {name: backup-scripts, mountPath: /backup-scripts, readOnly: true}
    - {name: restore, mountPath: /restore}
    - {name: tmp, mountPath: /tmp}
    {{- if .Values.persistence.uploads }}
    - {name: uploads, mountPath: /app/static}
    {{- end }}
    {{- if $b.repositoryVolume }}
    # Read-write: restic takes a (shared) lock in the repository while it reads.
    - {name: repository, mountPath: {{ $b.repositoryMountPath | quote }}}
    {{- end }}
{{ include "medusa.restoreDbStep" (dict "ctx" . "step" "load") }}
{{ include "medusa.restoreDbStep" (dict "ctx" . "step" "rewrite") }}
{{ include "medusa.restoreDbStep" (dict "ctx" . "step" "finish") }}
{{- end -}}

{{/* The restore's volumes: its work directory, the backup scripts, the uploads, a local repository. */}}
{{- define "medusa.restoreVolumes" -}}
{{- $b := .Values.backup -}}
- name: restore
  emptyDir:
    sizeLimit: {{ (include "medusa.resources" . | fromYaml).storage.db | quote }}
- name: backup-scripts
  configMap:
    name: {{ include "medusa.fullname" . }}-backup-scripts
{{- if .Values.persistence.uploads }}
- name: uploads
  persistentVolumeClaim:
    claimName: {{ include "medusa.fullname" . }}-uploads
{{- end }}
{{- with $b.repositoryVolume }}
- name: repository
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
