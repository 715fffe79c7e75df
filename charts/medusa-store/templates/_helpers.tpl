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

{{/* An image reference; with `digest` set, pinned to it (repository:tag@sha256:...). */}}
{{- define "medusa.image" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- with .digest }}@{{ . }}{{ end -}}
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

{{/*
Key of the migrations the running pods need: the image's build and the setup version. A tag is
not a build (a rebuilt `:dev` keeps its tag), so image.digest or image.buildId, when set, are part
of it: a new build then runs `medusa db:migrate` and rolls the pods.
*/}}
{{- define "medusa.migrationId" -}}
{{- $i := .Values.image -}}
{{- printf "%s:%s@%s+%s|%s" $i.repository (toString $i.tag) ($i.digest | default "") (toString ($i.buildId | default "")) (toString .Values.setup.version) | sha256sum | trunc 12 -}}
{{- end -}}

{{/*
Name suffix of the setup Job: a hash of the Job's whole rendered spec, as rendered with an empty
hash. A Job's spec.template is immutable, so whatever changes the pod template (values, labels
such as helm.sh/chart, the scripts through their checksum) must change the name.
*/}}
{{- define "medusa.setupHash" -}}
{{- include "medusa.setupJobSpec" (dict "ctx" . "hash" "") | sha256sum | trunc 10 -}}
{{- end -}}

{{/* A resource quantity (Ki/Mi/Gi/Ti, k/M/G/T, or plain bytes) as a float of bytes. */}}
{{- define "medusa.bytes" -}}
{{- $q := toString . -}}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $q -}}
{{- $suffix := trimPrefix $num $q -}}
{{- if or (not $num) (and $suffix (not (hasKey $units $suffix))) -}}
{{- fail (printf "%q is not a quantity this chart understands (e.g. 5Gi, 512Mi)" $q) -}}
{{- end -}}
{{- mulf (float64 $num) (float64 (get $units $suffix | default 1)) -}}
{{- end -}}

{{/*
Size of a PVC on this upgrade: (dict "ctx" $ "name" <claim name> "requested" <size from the plan>).
New claims get the request; existing ones keep their size (claims never shrink; growing needs a
StorageClass with allowVolumeExpansion, which k3s local-path lacks) unless
persistence.expandVolumes is true and the request is larger.
*/}}
{{- define "medusa.pvcSize" -}}
{{- $existing := lookup "v1" "PersistentVolumeClaim" .ctx.Release.Namespace .name | default dict -}}
{{- $current := dig "spec" "resources" "requests" "storage" "" $existing -}}
{{- if not $current -}}
{{- .requested -}}
{{- else if and .ctx.Values.persistence.expandVolumes (gt (include "medusa.bytes" .requested | float64) (include "medusa.bytes" $current | float64)) -}}
{{- .requested -}}
{{- else -}}
{{- $current -}}
{{- end -}}
{{- end -}}

{{/* serviceName of a StatefulSet (immutable): an existing StatefulSet keeps its own. */}}
{{- define "medusa.serviceName" -}}
{{- $existing := lookup "apps/v1" "StatefulSet" .ctx.Release.Namespace .name | default dict -}}
{{- dig "spec" "serviceName" .service $existing -}}
{{- end -}}

{{/* Tax rates as lines "name|rate" (STORE_TAXES for the seed and migration scripts). */}}
{{- define "medusa.taxLines" -}}
{{- $lines := list -}}
{{- range .Values.store.taxes | default list -}}
{{- if or (contains "|" (toString .name)) (contains "\n" (toString .name)) -}}
{{- fail (printf "tax name %q must not contain '|' or a newline" .name) -}}
{{- end -}}
{{- $lines = append $lines (printf "%s|%s" (toString .name) (toString .rate)) -}}
{{- end -}}
{{- join "\n" $lines -}}
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
- name: MEDUSA_DISABLE_TELEMETRY
  value: "true"
{{- $storefront := join "," (prepend ($.Values.server.storefrontOrigins | default list) $url) }}
- name: STORE_CORS
  value: {{ $storefront | quote }}
- name: ADMIN_CORS
  value: {{ $url | quote }}
- name: AUTH_CORS
  value: {{ $storefront | quote }}
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
