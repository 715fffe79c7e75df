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
    // WP-Cron's loopback request to the store's own URL cannot reach Apache from inside the pod
    // (the host resolves to 127.0.0.1 locally, to a public IP the NetworkPolicy denies in
    // production): the chart's CronJob runs due events instead.
    define('DISABLE_WP_CRON', true);
    // Set for WordPress and its cron when they have no HTTPS egress: outbound calls fail at
    // once instead of hanging (the setup Job does not set it: it downloads from wordpress.org).
    if (getenv('STOREKEEPER_BLOCK_EXTERNAL_HTTP') === 'true') {
      define('WP_HTTP_BLOCK_EXTERNAL', true);
      if (getenv('STOREKEEPER_ACCESSIBLE_HOSTS')) {
        define('WP_ACCESSIBLE_HOSTS', getenv('STOREKEEPER_ACCESSIBLE_HOSTS'));
      }
    }
    {{- with .Values.wordpress.configExtra }}
    {{- nindent 4 . }}
    {{- end }}
{{- with .Values.wordpress.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Environment of the pods that serve or run WordPress code (WordPress, cron) but not the setup Job:
with no HTTPS egress, block outbound HTTP (WP_HTTP_BLOCK_EXTERNAL) so admin pages and cron events
fail fast instead of waiting for a connection the NetworkPolicy drops.
*/}}
{{- define "woo.httpBlockEnv" -}}
{{- $np := .Values.networkPolicy -}}
- name: STOREKEEPER_BLOCK_EXTERNAL_HTTP
  value: {{ ternary "true" "false" (and $np.enabled (not $np.wordpressHttpsEgress)) | quote }}
- name: STOREKEEPER_ACCESSIBLE_HOSTS
  value: {{ join "," (.Values.wordpress.accessibleHosts | default list) | quote }}
{{- end -}}

{{/*
Name suffix of the setup Job: a hash of the Job's whole rendered spec, pod template included, as
rendered with an empty hash (the hash itself only appears in names and SETUP_HASH). A Job's
spec.template is immutable, so whatever changes the pod template (values, labels such as
helm.sh/chart, the script through its checksum) must change the name: helm then creates a new
Job and deletes the old one instead of patching it.
*/}}
{{- define "woo.setupHash" -}}
{{- include "woo.setupJobSpec" (dict "ctx" . "hash" "") | sha256sum | trunc 10 -}}
{{- end -}}

{{/*
A resource quantity (Ki/Mi/Gi/Ti, k/M/G/T, or plain bytes) as a float of bytes, for comparisons.
*/}}
{{- define "woo.bytes" -}}
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
A new claim gets the requested size. An existing claim keeps its size (a claim can never shrink,
and growing needs a StorageClass with allowVolumeExpansion, which k3s local-path lacks) unless
persistence.expandVolumes is true and the request is larger: then the larger of the two.
`lookup` sees nothing under `helm template`/dry runs, which then show the requested size.
*/}}
{{- define "woo.pvcSize" -}}
{{- $existing := lookup "v1" "PersistentVolumeClaim" .ctx.Release.Namespace .name | default dict -}}
{{- $current := dig "spec" "resources" "requests" "storage" "" $existing -}}
{{- if not $current -}}
{{- .requested -}}
{{- else if and .ctx.Values.persistence.expandVolumes (gt (include "woo.bytes" .requested | float64) (include "woo.bytes" $current | float64)) -}}
{{- .requested -}}
{{- else -}}
{{- $current -}}
{{- end -}}
{{- end -}}

{{/*
serviceName of a StatefulSet: (dict "ctx" $ "name" <statefulset> "service" <headless service>).
It is immutable, so a StatefulSet created by an earlier chart (governed by the ClusterIP Service of
the same name) keeps its own; new ones are governed by the headless Service.
*/}}
{{- define "woo.serviceName" -}}
{{- $existing := lookup "apps/v1" "StatefulSet" .ctx.Release.Namespace .name | default dict -}}
{{- dig "spec" "serviceName" .service $existing -}}
{{- end -}}

{{/*
Apache's mpm_prefork sizing: MaxRequestWorkers is as many mod_php workers as the WordPress memory
limit holds at wordpress.apache.workerMemory each, after 128Mi for Apache itself and the opcache
(Debian's default of 150 workers would exceed any plan's limit and get the pod OOM-killed).
*/}}
{{- define "woo.maxRequestWorkers" -}}
{{- $a := .Values.wordpress.apache -}}
{{- if $a.maxRequestWorkers -}}
{{- int $a.maxRequestWorkers -}}
{{- else -}}
{{- $limit := required "wordpress.resources.limits.memory is required (Apache's worker count is sized from it)" (dig "limits" "memory" "" .Values.wordpress.resources) -}}
{{- $free := subf (include "woo.bytes" $limit | float64) (include "woo.bytes" "128Mi" | float64) -}}
{{- max 2 (floor (divf $free (include "woo.bytes" $a.workerMemory | float64)) | int) -}}
{{- end -}}
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
