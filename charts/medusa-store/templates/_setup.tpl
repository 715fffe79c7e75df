{{/*
The setup Job's spec: (dict "ctx" $ "hash" <name suffix>). Rendered once with an empty hash to
compute the suffix (medusa.setupHash), then for real, so the name follows every input of the pod
template. Indented for `spec:` at column 0 (nindent 2 at the call site).
*/}}
{{- define "medusa.setupJobSpec" -}}
{{- $hash := .hash -}}
{{- with .ctx -}}
{{- $full := include "medusa.fullname" . }}
{{- $s := .Values.store -}}
{{- $restore := .Values.backup.restore.enabled -}}
backoffLimit: {{ .Values.setup.backoffLimit }}
activeDeadlineSeconds: {{ .Values.setup.activeDeadlineSeconds }}
template:
  metadata:
    labels:
      {{- include "medusa.labels" . | nindent 6 }}
      app.kubernetes.io/component: setup
    annotations:
      checksum/scripts: {{ printf "%s%s" (.Files.Get "files/db.sh") (.Files.Get "files/medusa.sh") | sha256sum | trunc 16 }}
  spec:
    # A restore retries from its first step in a new pod (restore.sh: the dump is loaded again
    # before the URLs are rewritten again), so it never restarts a step in place.
    restartPolicy: {{ ternary "Never" "OnFailure" (eq (toString $restore) "true") }}
    automountServiceAccountToken: false
    enableServiceLinks: false
    {{- with .Values.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      {{- include "medusa.podSecurityContext" (dict "uid" (int .Values.image.uid)) | nindent 6 }}
    {{- if and $restore .Values.persistence.uploads }}
    # The uploads are on a ReadWriteOnce volume: restore them on the node where the server runs.
    affinity:
      podAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
          - topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "medusa.selectorLabels" (dict "ctx" . "component" "server") | nindent 16 }}
    {{- end }}
    initContainers:
      {{- if $restore }}
      {{- include "medusa.restoreInitContainers" . | nindent 6 }}
      {{- end }}
      - name: prepare
        image: {{ include "medusa.image" .Values.postgres.image }}
        imagePullPolicy: {{ .Values.postgres.image.pullPolicy }}
        command: ["/bin/sh", "/scripts/db.sh", "prepare"]
        securityContext:
          {{- include "medusa.containerSecurityContext" (dict "uid" 999) | nindent 10 }}
        env:
          {{- include "medusa.pgEnv" . | nindent 10 }}
          - name: WAIT_SECONDS
            value: {{ .Values.setup.waitSeconds | toString | quote }}
        resources:
          {{- toYaml .Values.helperResources | nindent 10 }}
        volumeMounts:
          - {name: scripts, mountPath: /scripts, readOnly: true}
          - {name: state, mountPath: /state}
      - name: medusa
        image: {{ include "medusa.image" .Values.image }}
        imagePullPolicy: {{ .Values.image.pullPolicy }}
        command: ["/bin/sh", "/scripts/medusa.sh"]
        securityContext:
          {{- include "medusa.containerSecurityContext" (dict "uid" (int .Values.image.uid) "readOnly" .Values.image.readOnlyRootFilesystem) | nindent 10 }}
        env:
          {{- include "medusa.appEnv" (dict "ctx" . "mode" "shared") | nindent 10 }}
          - name: MEDUSA_BIN
            value: {{ .Values.image.medusaBin | quote }}
          - name: STORE_TITLE
            value: {{ $s.title | quote }}
          - name: STORE_ADMIN_EMAIL
            value: {{ required "store.adminEmail is required" $s.adminEmail | quote }}
          {{- include "medusa.secretEnv" (dict "ctx" . "env" "STORE_ADMIN_PASSWORD" "key" "admin-password") | nindent 10 }}
          - name: STORE_CURRENCY
            value: {{ $s.currency | quote }}
          - name: STORE_COUNTRY
            value: {{ $s.country | quote }}
          - name: STORE_STATE
            value: {{ $s.state | default "" | quote }}
          - name: STORE_ADDRESS
            value: {{ $s.address | default "" | quote }}
          - name: STORE_CITY
            value: {{ $s.city | default "" | quote }}
          - name: STORE_POSTCODE
            value: {{ $s.postcode | default "" | quote }}
          - name: STORE_SAMPLE_PRODUCTS
            value: {{ ternary "true" "false" (eq (toString $s.sampleProducts) "true") | quote }}
          - name: STORE_TAXES
            value: {{ include "medusa.taxLines" . | quote }}
          - name: SEED_ENABLED
            value: {{ ternary "true" "false" (eq (toString .Values.setup.seed.enabled) "true") | quote }}
          - name: SEED_SCRIPT
            value: {{ .Values.setup.seed.script | quote }}
          - name: MIGRATE_ARGS
            value: {{ .Values.setup.migrateArgs | quote }}
          - name: MIGRATION_ID
            value: {{ include "medusa.migrationId" . | quote }}
          - name: SETUP_VERSION
            value: {{ .Values.setup.version | toString | quote }}
          - name: SETUP_HASH
            value: {{ $hash | quote }}
        resources:
          {{- toYaml .Values.setup.resources | nindent 10 }}
        volumeMounts:
          - {name: scripts, mountPath: /scripts, readOnly: true}
          - {name: state, mountPath: /state}
          - {name: tmp, mountPath: /tmp}
    containers:
      - name: record
        image: {{ include "medusa.image" .Values.postgres.image }}
        imagePullPolicy: {{ .Values.postgres.image.pullPolicy }}
        command: ["/bin/sh", "/scripts/db.sh", "record"]
        securityContext:
          {{- include "medusa.containerSecurityContext" (dict "uid" 999) | nindent 10 }}
        env:
          {{- include "medusa.pgEnv" . | nindent 10 }}
        resources:
          {{- toYaml .Values.helperResources | nindent 10 }}
        volumeMounts:
          - {name: scripts, mountPath: /scripts, readOnly: true}
          - {name: state, mountPath: /state}
    volumes:
      - name: scripts
        configMap:
          name: {{ $full }}-scripts
      - name: state
        emptyDir: {}
      - name: tmp
        emptyDir: {}
      {{- if $restore }}
      {{- include "medusa.restoreVolumes" . | nindent 6 }}
      {{- end }}
{{- end -}}
{{- end -}}
