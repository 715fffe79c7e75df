{{/* Resource name prefix: the release name (one store per namespace). */}}
{{- define "medusa.fullname" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "medusa.labels" -}}
app.kubernetes.io/name: medusa-store
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: storekeeper
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels for one component: (dict "ctx" $ "component" "wordpress") */}}
{{- define "medusa.selectorLabels" -}}
app.kubernetes.io/name: medusa-store
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "medusa.secretName" -}}
{{- .Values.existingSecret | default "storekeeper-credentials" -}}
{{- end -}}

{{- define "medusa.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{/* Effective resources: the plan preset overlaid with .Values.resources. Returns YAML. */}}
{{- define "medusa.resources" -}}
{{- $plan := .Values.store.plan | default "small" -}}
{{- if not (hasKey .Values.plans $plan) -}}
{{- fail (printf "store.plan %q is not one of: %s" $plan (keys .Values.plans | sortAlpha | join ", ")) -}}
{{- end -}}
{{- $preset := deepCopy (index .Values.plans $plan) -}}
{{- toYaml (mergeOverwrite $preset (deepCopy (.Values.resources | default dict))) -}}
{{- end -}}

{{- define "medusa.scheme" -}}
{{- if .Values.ingress.tls.enabled }}https{{ else }}http{{ end -}}
{{- end -}}

{{- define "medusa.host" -}}
{{- required "store.host is required" .Values.store.host -}}
{{- end -}}

{{- define "medusa.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "medusa.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ if hasKey . "readOnly" }}{{ .readOnly }}{{ else }}true{{ end }}
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "medusa.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "medusa.secretName" .ctx }}
      key: {{ .key }}
{{- end -}}


{{- define "medusa.url" -}}
{{- include "medusa.scheme" . }}://{{ include "medusa.host" . -}}
{{- end -}}

{{/* Key of the migrations the running pods need: the image and the setup version. */}}
{{- define "medusa.migrationId" -}}
{{- printf "%s:%s|%s" .Values.image.repository (toString .Values.image.tag) (toString .Values.setup.version) | sha256sum | trunc 12 -}}
{{- end -}}

{{/* Hash of everything the setup Job depends on: names the Job (its pod template is immutable). */}}
{{- define "medusa.setupHash" -}}
{{- $inputs := dict "store" .Values.store "setup" .Values.setup "image" .Values.image "postgres" .Values.postgres.image "db" (.Files.Get "files/db.sh") "medusa" (.Files.Get "files/medusa.sh") "url" (include "medusa.url" .) "secret" (include "medusa.secretName" .) -}}
{{- toJson $inputs | sha256sum | trunc 10 -}}
{{- end -}}

{{/* libpq environment for psql in the postgres image. */}}
{{- define "medusa.pgEnv" -}}
- name: PGHOST
  value: {{ include "medusa.fullname" . }}-postgres
- name: PGPORT
  value: "5432"
- name: PGUSER
  value: {{ .Values.postgres.user | quote }}
- name: PGDATABASE
  value: {{ .Values.postgres.database | quote }}
{{ include "medusa.secretEnv" (dict "ctx" . "env" "PGPASSWORD" "key" "postgres-password") }}
{{- end -}}

{{/* Environment of the Medusa server, worker and setup: (dict "ctx" $ "mode" "server|worker|shared") */}}
{{- define "medusa.appEnv" -}}
{{- $ := .ctx -}}
{{- $url := include "medusa.url" $ -}}
- name: NODE_ENV
  value: production
- name: HOME
  value: /tmp
- name: PORT
  value: {{ $.Values.server.port | toString | quote }}
- name: MEDUSA_WORKER_MODE
  value: {{ .mode }}
- name: DISABLE_MEDUSA_ADMIN
  value: {{ ternary "true" "false" (eq .mode "worker") | quote }}
- name: MEDUSA_BACKEND_URL
  value: {{ $url | quote }}
- name: STORE_CORS
  value: {{ $url | quote }}
- name: ADMIN_CORS
  value: {{ $url | quote }}
- name: AUTH_CORS
  value: {{ $url | quote }}
{{ include "medusa.secretEnv" (dict "ctx" $ "env" "POSTGRES_PASSWORD" "key" "postgres-password") }}
- name: DATABASE_URL
  value: {{ printf "postgres://%s:$(POSTGRES_PASSWORD)@%s-postgres:5432/%s?sslmode=disable" $.Values.postgres.user (include "medusa.fullname" $) $.Values.postgres.database | quote }}
- name: REDIS_URL
  value: {{ printf "redis://%s-redis:6379" (include "medusa.fullname" $) | quote }}
{{ include "medusa.secretEnv" (dict "ctx" $ "env" "JWT_SECRET" "key" "jwt-secret") }}
{{ include "medusa.secretEnv" (dict "ctx" $ "env" "COOKIE_SECRET" "key" "cookie-secret") }}
{{- with $.Values.server.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
