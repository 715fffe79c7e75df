{{/*
The setup Job's spec: (dict "ctx" $ "hash" <name suffix>). Rendered once with an empty hash to
compute the suffix (woo.setupHash), then for real; so the name follows every input of the pod
template, and the template stays immutable for a given name. Indented for `spec:` at column 0
(nindent 0 at the call site).
*/}}
{{- define "woo.setupJobSpec" -}}
{{- $hash := .hash -}}
{{- with .ctx -}}
{{- $name := printf "%s-setup" (include "woo.fullname" .) }}
{{- $s := .Values.store -}}
{{- $restore := .Values.backup.restore.enabled -}}
backoffLimit: {{ .Values.setup.backoffLimit }}
activeDeadlineSeconds: {{ .Values.setup.activeDeadlineSeconds }}
template:
  metadata:
    labels:
      {{- include "woo.labels" . | nindent 6 }}
      app.kubernetes.io/component: setup
    annotations:
      # The script lives in a ConfigMap; its checksum puts it into the pod template (and so into
      # the Job's name).
      checksum/setup-script: {{ .Files.Get "files/setup.sh" | sha256sum | trunc 16 }}
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
      {{- include "woo.podSecurityContext" (dict "uid" 33) | nindent 6 }}
    # The WordPress volume is ReadWriteOnce: run on the node where WordPress runs.
    affinity:
      podAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
          - topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "woo.selectorLabels" (dict "ctx" . "component" "wordpress") | nindent 16 }}
    {{- if $restore }}
    initContainers:
      {{- include "woo.restoreInitContainers" . | nindent 6 }}
    {{- end }}
    containers:
      - name: wp-cli
        image: {{ include "woo.image" .Values.image.cli }}
        imagePullPolicy: {{ .Values.image.cli.pullPolicy }}
        command: ["/bin/sh", "/scripts/setup.sh"]
        workingDir: /var/www/html
        securityContext:
          {{- include "woo.containerSecurityContext" (dict "uid" 33) | nindent 10 }}
        env:
          - name: HOME
            value: /tmp
          - name: WP_CLI_CACHE_DIR
            value: /tmp/wp-cli-cache
          {{- include "woo.wordpressEnv" . | nindent 10 }}
          - name: STORE_URL
            value: {{ printf "%s://%s" (include "woo.scheme" .) (include "woo.host" .) | quote }}
          - name: STORE_TITLE
            value: {{ required "store.title is required" $s.title | quote }}
          - name: STORE_ADMIN_USER
            value: {{ required "store.adminUser is required" $s.adminUser | quote }}
          - name: STORE_ADMIN_EMAIL
            value: {{ required "store.adminEmail is required" $s.adminEmail | quote }}
          {{- include "woo.secretEnv" (dict "ctx" . "env" "STORE_ADMIN_PASSWORD" "key" "admin-password") | nindent 10 }}
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
          - name: STORE_TAXES
            value: {{ include "woo.taxLines" . | quote }}
          - name: STORE_COD
            value: {{ ternary "true" "false" (eq (toString $s.cashOnDelivery) "true") | quote }}
          - name: STORE_SAMPLE_PRODUCTS
            value: {{ ternary "true" "false" (eq (toString $s.sampleProducts) "true") | quote }}
          - name: SHIPPING_TITLE
            value: {{ .Values.setup.shipping.title | quote }}
          - name: SHIPPING_COST
            value: {{ .Values.setup.shipping.cost | toString | quote }}
          - name: WORDPRESS_VERSION
            value: {{ .Values.setup.wordpressVersion | toString | quote }}
          - name: WOOCOMMERCE_VERSION
            value: {{ .Values.setup.woocommerceVersion | quote }}
          - name: STOREFRONT_VERSION
            value: {{ .Values.setup.storefrontVersion | quote }}
          - name: SETUP_VERSION
            value: {{ .Values.setup.version | toString | quote }}
          - name: SETUP_HASH
            value: {{ $hash | quote }}
          - name: WAIT_SECONDS
            value: {{ .Values.setup.waitSeconds | toString | quote }}
        resources:
          {{- toYaml .Values.setup.resources | nindent 10 }}
        volumeMounts:
          - name: html
            mountPath: /var/www/html
          - name: scripts
            mountPath: /scripts
            readOnly: true
          - name: tmp
            mountPath: /tmp
    volumes:
      - name: html
        persistentVolumeClaim:
          claimName: {{ include "woo.fullname" . }}-wordpress-html
      - name: scripts
        configMap:
          name: {{ $name }}-{{ $hash }}
      - name: tmp
        emptyDir: {}
      {{- if $restore }}
      {{- include "woo.restoreVolumes" . | nindent 6 }}
      {{- end }}
{{- end -}}
{{- end -}}
