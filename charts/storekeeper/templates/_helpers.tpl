{{/* Name of the chart, truncated to a DNS label. */}}
{{- define "storekeeper.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name. */}}
{{- define "storekeeper.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "storekeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "storekeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "storekeeper.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "storekeeper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "storekeeper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "storekeeper.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Replicas: explicit, else 2 with leader election and 1 without. */}}
{{- define "storekeeper.replicas" -}}
{{- if not (kindIs "invalid" .Values.replicaCount) }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: two daemons would both run helm" }}
{{- end }}
{{- int .Values.replicaCount }}
{{- else if .Values.leaderElection.enabled }}2
{{- else }}1
{{- end }}
{{- end }}

{{/* Validates the source settings. */}}
{{- define "storekeeper.checkSource" -}}
{{- if eq .Values.source.type "git" }}
{{- if not .Values.source.git.url }}
{{- fail "source.git.url is required with source.type git" }}
{{- end }}
{{- else if eq .Values.source.type "inline" }}
{{- if not .Values.source.stores }}
{{- fail "source.stores must not be empty with source.type inline (an empty source would prune every store)" }}
{{- end }}
{{- else }}
{{- fail (printf "source.type must be git or inline, not %q" .Values.source.type) }}
{{- end }}
{{- end }}
