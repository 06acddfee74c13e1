{{/*
Helpers shared by the templates: names and labels, the mode switches, the gateway's configuration (built as a
dict, rendered as TOML), and the pieces of the pod spec that the Deployment and the migration Job share.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "onboarding-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The resource name prefix: fullnameOverride, or <release>-<name> unless the release already says it. */}}
{{- define "onboarding-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "onboarding-gateway.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "onboarding-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "onboarding-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels every pod of the release carries (gateway, migration Job, helm test): the NetworkPolicy's scope. */}}
{{- define "onboarding-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "onboarding-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The gateway pods alone: the Deployment's selector, the Services', the PDB's and the spread's. */}}
{{- define "onboarding-gateway.gatewaySelectorLabels" -}}
{{ include "onboarding-gateway.selectorLabels" . }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "onboarding-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "onboarding-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "onboarding-gateway.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Mode switches, as "true" or "". */}}
{{- define "onboarding-gateway.sandbox" -}}
{{- if .Values.sandbox.enabled -}}true{{- end -}}
{{- end -}}

{{- define "onboarding-gateway.postgresql" -}}
{{- if and (not .Values.sandbox.enabled) (eq .Values.store.backend "postgresql") -}}true{{- end -}}
{{- end -}}

{{- define "onboarding-gateway.sqlitePersistent" -}}
{{- if and (not .Values.sandbox.enabled) (eq .Values.store.backend "sqlite") -}}true{{- end -}}
{{- end -}}

{{- define "onboarding-gateway.migrationJob" -}}
{{- if and (include "onboarding-gateway.postgresql" .) .Values.store.migrations.job -}}true{{- end -}}
{{- end -}}

{{- define "onboarding-gateway.mtls" -}}
{{- if and (not .Values.sandbox.enabled) (has "mtls" (dig "auth" "methods" (list) .Values.config)) -}}true{{- end -}}
{{- end -}}

{{- define "onboarding-gateway.jwt" -}}
{{- if and (not .Values.sandbox.enabled) (has "jwt" (dig "auth" "methods" (list) .Values.config)) -}}true{{- end -}}
{{- end -}}

{{- define "onboarding-gateway.grpcTls" -}}
{{- if and (not .Values.sandbox.enabled) .Values.secrets.grpcTls.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* The grpc.health.v1 service names the probes ask for (the gateway's own defaults unless configured). */}}
{{- define "onboarding-gateway.livenessService" -}}
{{- dig "health" "liveness_service" "liveness" .Values.config -}}
{{- end -}}

{{- define "onboarding-gateway.readinessService" -}}
{{- dig "health" "readiness_service" "readiness" .Values.config -}}
{{- end -}}

{{- define "onboarding-gateway.webhookPath" -}}
{{- dig "webhook" "path" "/webhooks/connectpay" .Values.config -}}
{{- end -}}

{{/* Past the drain: preStop sleep + drain delay + grace period, and 10 s for the kubelet's own steps. */}}
{{- define "onboarding-gateway.terminationGracePeriodSeconds" -}}
{{- add .Values.shutdown.preStopSleepSeconds .Values.shutdown.drainDelaySeconds .Values.shutdown.gracePeriodSeconds 10 -}}
{{- end -}}

{{/*
Checks that a JSON schema cannot express: ports that differ, autoscaling bounds in order.
*/}}
{{- define "onboarding-gateway.checks" -}}
{{- $ports := list .Values.ports.grpc .Values.ports.webhook .Values.ports.admin .Values.ports.health -}}
{{- if ne (len (uniq $ports)) 4 -}}
{{- fail (printf "ports: grpc, webhook, admin and health must all differ (got %v)" $ports) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling: minReplicas must not exceed maxReplicas" -}}
{{- end -}}
{{- end -}}

{{/* Where the Secrets are mounted; the configuration's *_file keys point here. */}}
{{- define "onboarding-gateway.paths" -}}
config: /etc/onboarding-gateway
data: /var/lib/onboarding-gateway
connectpay: /var/run/secrets/connectpay
webhook: /var/run/secrets/webhook
store: /var/run/secrets/store
grpcTls: /var/run/secrets/grpc-tls
jwks: /var/run/secrets/jwks
proxy: /var/run/secrets/proxy
{{- end -}}

{{/*
The settings the chart owns, as YAML: listen addresses, secret file paths, the store, shutdown timings, the
proxy. Merged over .Values.config (whose schema refuses these keys), then rendered as TOML.
*/}}
{{- define "onboarding-gateway.ownedConfig" -}}
{{- $p := include "onboarding-gateway.paths" . | fromYaml -}}
{{- $host := ternary "127.0.0.1" "0.0.0.0" .Values.sandbox.enabled -}}
grpc:
  listen: {{ printf "%s:%d" $host (int .Values.ports.grpc) | quote }}
  {{- if include "onboarding-gateway.grpcTls" . }}
  tls:
    cert_file: {{ printf "%s/tls.crt" $p.grpcTls | quote }}
    key_file: {{ printf "%s/tls.key" $p.grpcTls | quote }}
    {{- if include "onboarding-gateway.mtls" . }}
    client_ca_file: {{ printf "%s/ca.crt" $p.grpcTls | quote }}
    {{- end }}
  {{- end }}
admin:
  listen: {{ printf "%s:%d" $host (int .Values.ports.admin) | quote }}
health:
  listen: {{ printf "%s:%d" $host (int .Values.ports.health) | quote }}
webhook:
  listen: {{ printf "%s:%d" $host (int .Values.ports.webhook) | quote }}
  {{- if not .Values.sandbox.enabled }}
  tokens_file: {{ printf "%s/tokens" $p.webhook | quote }}
  {{- end }}
shutdown:
  drain_delay: {{ printf "%ds" (int .Values.shutdown.drainDelaySeconds) | quote }}
  grace_period: {{ printf "%ds" (int .Values.shutdown.gracePeriodSeconds) | quote }}
{{- if not .Values.sandbox.enabled }}
store:
  {{- if include "onboarding-gateway.postgresql" . }}
  url_file: {{ printf "%s/url" $p.store | quote }}
  migrate_at_start: {{ not .Values.store.migrations.job }}
  {{- else }}
  url: {{ printf "sqlite://%s/gateway.db" $p.data | quote }}
  migrate_at_start: true
  {{- end }}
  key_file: {{ printf "%s/key" $p.store | quote }}
connectpay:
  client_secret_file: {{ printf "%s/client-secret" $p.connectpay | quote }}
  {{- if .Values.secrets.connectpayAuthCode.existingSecret }}
  auth_code_file: {{ printf "%s/auth-code" $p.connectpay | quote }}
  {{- end }}
  {{- if .Values.proxy.existingSecret }}
  proxy_url_file: {{ printf "%s/url" $p.proxy | quote }}
  {{- else if .Values.proxy.url }}
  proxy_url: {{ .Values.proxy.url | quote }}
  {{- end }}
  {{- if .Values.proxy.noProxy }}
  no_proxy: {{ .Values.proxy.noProxy | quote }}
  {{- end }}
  tls:
    client_cert_file: {{ printf "%s/tls.crt" $p.connectpay | quote }}
    client_key_file: {{ printf "%s/tls.key" $p.connectpay | quote }}
    {{- if .Values.secrets.connectpayCaBundle.existingSecret }}
    ca_bundle_file: {{ printf "%s/ca.crt" $p.connectpay | quote }}
    {{- end }}
{{- if include "onboarding-gateway.jwt" . }}
auth:
  jwt:
    jwks_file: {{ printf "%s/jwks.json" $p.jwks | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The whole configuration file, as the gateway reads it. */}}
{{- define "onboarding-gateway.configToml" -}}
{{- $config := mustMergeOverwrite (deepCopy (default dict .Values.config)) (include "onboarding-gateway.ownedConfig" . | fromYaml) -}}
# onboarding-gateway configuration, rendered by the Helm chart from its values (config, and the chart's own
# settings: listen addresses, secret files, store, shutdown, proxy). Keys not here take the gateway's defaults.
{{- include "onboarding-gateway.toml.table" (dict "path" (list) "table" $config) }}
{{- end -}}

{{/*
A minimal TOML writer for the configuration: a table's plain keys first, then its sub-tables as [a.b]
sections. Strings are written as JSON strings (whose escapes TOML's basic strings share); numbers from YAML
arrive as floats and are written as integers when whole; null values are left out.
*/}}
{{- define "onboarding-gateway.toml.table" -}}
{{- $table := .table -}}
{{- $path := .path -}}
{{- range $key := keys $table | sortAlpha }}
{{- $value := index $table $key }}
{{- if and (not (kindIs "map" $value)) (not (kindIs "invalid" $value)) }}
{{ include "onboarding-gateway.toml.key" $key }} = {{ include "onboarding-gateway.toml.value" $value }}
{{- end }}
{{- end }}
{{- range $key := keys $table | sortAlpha }}
{{- $value := index $table $key }}
{{- if kindIs "map" $value }}
{{- $sub := append $path (include "onboarding-gateway.toml.key" $key) }}

[{{ join "." $sub }}]
{{- include "onboarding-gateway.toml.table" (dict "path" $sub "table" $value) }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "onboarding-gateway.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "onboarding-gateway.toml.value" -}}
{{- if kindIs "string" . -}}
{{ toJson . }}
{{- else if kindIs "bool" . -}}
{{ . }}
{{- else if or (kindIs "int" .) (kindIs "int64" .) -}}
{{ . }}
{{- else if kindIs "float64" . -}}
{{- if eq (floor .) . -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else if kindIs "slice" . -}}
[{{ range $i, $item := . }}{{ if $i }}, {{ end }}{{ include "onboarding-gateway.toml.value" $item }}{{ end }}]
{{- else -}}
{{- fail (printf "config: cannot write %v (%s) as TOML" . (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{/* The pod security context of every pod: the "restricted" Pod Security Standard. */}}
{{- define "onboarding-gateway.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
# Volumes (the Secrets, the SQLite claim) are group-owned by 65532, so the gateway can read and write them.
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "onboarding-gateway.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment of the gateway container (and the migration Job's). */}}
{{- define "onboarding-gateway.env" -}}
- name: ONBOARDING_GATEWAY_CONFIG
  value: {{ printf "%s/gateway.toml" (include "onboarding-gateway.paths" . | fromYaml).config | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE)%s" (ternary (printf ",%s" .Values.otel.resourceAttributes) "" (ne .Values.otel.resourceAttributes "")) | quote }}
{{- with .Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $.Values.otel.protocol | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volume mounts of the gateway container (and the migration Job's). */}}
{{- define "onboarding-gateway.volumeMounts" -}}
{{- $p := include "onboarding-gateway.paths" . | fromYaml -}}
- name: config
  mountPath: {{ $p.config }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if include "onboarding-gateway.sqlitePersistent" . }}
- name: data
  mountPath: {{ $p.data }}
{{- end }}
{{- if not .Values.sandbox.enabled }}
- name: connectpay
  mountPath: {{ $p.connectpay }}
  readOnly: true
- name: webhook
  mountPath: {{ $p.webhook }}
  readOnly: true
- name: store
  mountPath: {{ $p.store }}
  readOnly: true
{{- if include "onboarding-gateway.grpcTls" . }}
- name: grpc-tls
  mountPath: {{ $p.grpcTls }}
  readOnly: true
{{- end }}
{{- if include "onboarding-gateway.jwt" . }}
- name: jwks
  mountPath: {{ $p.jwks }}
  readOnly: true
{{- end }}
{{- if .Values.proxy.existingSecret }}
- name: proxy
  mountPath: {{ $p.proxy }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{/*
Volumes of the gateway pod (and the migration Job's). Secrets are mounted as whole volumes, never with
subPath, so the kubelet updates them in place and the gateway's reload sees rotations. Files are readable by
the gateway's group only. .configMap names the ConfigMap to mount.
*/}}
{{- define "onboarding-gateway.volumes" -}}
{{- $s := .root.Values.secrets -}}
- name: config
  configMap:
    name: {{ .configMap }}
    defaultMode: 0440
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.tmpSizeLimit }}
{{- if include "onboarding-gateway.sqlitePersistent" .root }}
- name: data
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-data" (include "onboarding-gateway.fullname" .root)) .root.Values.store.sqlite.persistence.existingClaim }}
{{- end }}
{{- if not .root.Values.sandbox.enabled }}
- name: connectpay
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ $s.connectpayClientSecret.existingSecret }}
          items:
            - key: {{ $s.connectpayClientSecret.key }}
              path: client-secret
      - secret:
          name: {{ $s.connectpayClientCertificate.existingSecret }}
          items:
            - key: {{ $s.connectpayClientCertificate.certKey }}
              path: tls.crt
            - key: {{ $s.connectpayClientCertificate.keyKey }}
              path: tls.key
      {{- with $s.connectpayAuthCode.existingSecret }}
      - secret:
          name: {{ . }}
          items:
            - key: {{ $s.connectpayAuthCode.key }}
              path: auth-code
      {{- end }}
      {{- with $s.connectpayCaBundle.existingSecret }}
      - secret:
          name: {{ . }}
          items:
            - key: {{ $s.connectpayCaBundle.key }}
              path: ca.crt
      {{- end }}
- name: webhook
  secret:
    secretName: {{ $s.webhookTokens.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $s.webhookTokens.key }}
        path: tokens
- name: store
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ $s.storeKey.existingSecret }}
          items:
            - key: {{ $s.storeKey.key }}
              path: key
      {{- if include "onboarding-gateway.postgresql" .root }}
      - secret:
          name: {{ $s.storeUrl.existingSecret }}
          items:
            - key: {{ $s.storeUrl.key }}
              path: url
      {{- end }}
{{- if include "onboarding-gateway.grpcTls" .root }}
- name: grpc-tls
  secret:
    secretName: {{ $s.grpcTls.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $s.grpcTls.certKey }}
        path: tls.crt
      - key: {{ $s.grpcTls.keyKey }}
        path: tls.key
      {{- if include "onboarding-gateway.mtls" .root }}
      - key: {{ $s.grpcTls.clientCaKey }}
        path: ca.crt
      {{- end }}
{{- end }}
{{- if include "onboarding-gateway.jwt" .root }}
- name: jwks
  secret:
    secretName: {{ $s.jwks.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $s.jwks.key }}
        path: jwks.json
{{- end }}
{{- with .root.Values.proxy.existingSecret }}
- name: proxy
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $.root.Values.proxy.key }}
        path: url
{{- end }}
{{- end }}
{{- end -}}

{{/*
A probe's action: the kubelet's native gRPC probe on the plaintext health port, or in sandbox mode (loopback
only, out of the kubelet's reach) the gateway's health client run inside the container.
*/}}
{{- define "onboarding-gateway.probeAction" -}}
{{- if .root.Values.sandbox.enabled -}}
exec:
  command:
    - /usr/local/bin/onboarding-gateway
    - client
    - --addr
    - {{ printf "http://127.0.0.1:%d" (int .root.Values.ports.grpc) }}
    - health
    - --service
    - {{ .service }}
{{- else -}}
grpc:
  port: {{ .root.Values.ports.health }}
  service: {{ .service }}
{{- end -}}
{{- end -}}

{{/*
Policy-scanner findings this chart accepts, each with its reason, as checkov reads them from the resource's
annotations (checkov.io/skipN: CHECK_ID=reason; a reason must not contain "="). .kind is gateway, migrate or
test. .ci/chart.sh fails on any other finding, and on a skip without a reason.
*/}}
{{- define "onboarding-gateway.checkovSkips" -}}
{{- $v := .root.Values -}}
{{- $skips := list -}}
{{- if not $v.image.digest -}}
{{- $skips = append $skips "CKV_K8S_43=No image is published for this chart: only the builder knows its digest. Set image.digest to pin the content; until then the tag names one release build" -}}
{{- end -}}
{{- if ne $v.image.pullPolicy "Always" -}}
{{- $skips = append $skips "CKV_K8S_15=A tag names one release build and a digest is exact (image.digest); Always would make every pod start depend on the registry being up" -}}
{{- end -}}
{{- if not $v.networkPolicy.enabled -}}
{{- $skips = append $skips "CKV2_K8S_6=networkPolicy.enabled is false in this installation: its peers (callers, ingress controller, ConnectPay, PostgreSQL) belong to each cluster. Set them and enable it, or rely on the namespace's own policies" -}}
{{- end -}}
{{- if eq .kind "test" -}}
{{- $skips = append $skips "CKV_K8S_8=The helm test pod runs one health check and exits; there is nothing to keep alive" -}}
{{- $skips = append $skips "CKV_K8S_9=The helm test pod runs one health check and exits; no traffic is routed to it" -}}
{{- end -}}
{{- $lines := list -}}
{{- range $i, $skip := $skips -}}
{{- $lines = append $lines (printf "checkov.io/skip%d: %s" (add1 $i) (quote $skip)) -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}
