{{/* Resource name prefix: the release name (one store per namespace). */}}
{{- define "woo.fullname" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "woo.labels" -}}
app.kubernetes.io/name: woocommerce-store
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: storekeeper
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels for one component: (dict "ctx" $ "component" "wordpress") */}}
{{- define "woo.selectorLabels" -}}
app.kubernetes.io/name: woocommerce-store
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "woo.secretName" -}}
{{- .Values.existingSecret | default "storekeeper-credentials" -}}
{{- end -}}

{{- define "woo.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{/* Effective resources: the plan preset overlaid with .Values.resources. Returns YAML. */}}
{{- define "woo.resources" -}}
{{- $plan := .Values.store.plan | default "small" -}}
{{- if not (hasKey .Values.plans $plan) -}}
{{- fail (printf "store.plan %q is not one of: %s" $plan (keys .Values.plans | sortAlpha | join ", ")) -}}
{{- end -}}
{{- $preset := deepCopy (index .Values.plans $plan) -}}
{{- toYaml (mergeOverwrite $preset (deepCopy (.Values.resources | default dict))) -}}
{{- end -}}

{{- define "woo.scheme" -}}
{{- if .Values.ingress.tls.enabled }}https{{ else }}http{{ end -}}
{{- end -}}

{{- define "woo.host" -}}
{{- required "store.host is required" .Values.store.host -}}
{{- end -}}

{{- define "woo.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "woo.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "woo.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "woo.secretName" .ctx }}
      key: {{ .key }}
{{- end -}}

{{/*
Environment read by the official image's wp-config.php at run time (getenv_docker): shared by the
WordPress container and the setup Job, which loads the same wp-config.php from the shared volume.
*/}}
{{- define "woo.wordpressEnv" -}}
- name: WORDPRESS_DB_HOST
  value: {{ include "woo.fullname" . }}-mariadb
- name: WORDPRESS_DB_NAME
  value: {{ .Values.mariadb.database | quote }}
- name: WORDPRESS_DB_USER
  value: {{ .Values.mariadb.user | quote }}
{{ include "woo.secretEnv" (dict "ctx" . "env" "WORDPRESS_DB_PASSWORD" "key" "db-password") }}
{{- range $env, $key := dict "WORDPRESS_AUTH_KEY" "auth-key" "WORDPRESS_SECURE_AUTH_KEY" "secure-auth-key" "WORDPRESS_LOGGED_IN_KEY" "logged-in-key" "WORDPRESS_NONCE_KEY" "nonce-key" "WORDPRESS_AUTH_SALT" "auth-salt" "WORDPRESS_SECURE_AUTH_SALT" "secure-auth-salt" "WORDPRESS_LOGGED_IN_SALT" "logged-in-salt" "WORDPRESS_NONCE_SALT" "nonce-salt" }}
{{ include "woo.secretEnv" (dict "ctx" $ "env" $env "key" $key) }}
{{- end }}
- name: WORDPRESS_CONFIG_EXTRA
  value: |
    define('WP_HOME', '{{ include "woo.scheme" . }}://{{ include "woo.host" . }}');
    define('WP_SITEURL', '{{ include "woo.scheme" . }}://{{ include "woo.host" . }}');
    define('AUTOMATIC_UPDATER_DISABLED', true);
    define('DISABLE_WP_CRON', false);
    {{- with .Values.wordpress.configExtra }}
    {{- nindent 4 . }}
    {{- end }}
{{- with .Values.wordpress.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Hash of everything the setup Job depends on: names the Job (a Job's pod template is immutable). */}}
{{- define "woo.setupHash" -}}
{{- $inputs := dict "store" .Values.store "setup" .Values.setup "image" .Values.image "script" (.Files.Get "files/setup.sh") "scheme" (include "woo.scheme" .) "secret" (include "woo.secretName" .) -}}
{{- toJson $inputs | sha256sum | trunc 10 -}}
{{- end -}}

{{/* Tax rates as lines "name|rate" for the setup script. */}}
{{- define "woo.taxLines" -}}
{{- $lines := list -}}
{{- range .Values.store.taxes | default list -}}
{{- if or (contains "|" (toString .name)) (contains "\n" (toString .name)) -}}
{{- fail (printf "tax name %q must not contain '|' or a newline" .name) -}}
{{- end -}}
{{- $lines = append $lines (printf "%s|%s" (toString .name) (toString .rate)) -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}
