{{/*
Names, labels and the RBAC rules of the Songbird chart.
The RBAC rules are written once here and included by the ClusterRole and by every namespaced Role, as
argo-helm's charts/argo-rollouts does with its controller role rules.
*/}}

{{- define "songbird.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "songbird.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "songbird.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "songbird.selectorLabels" -}}
app.kubernetes.io/name: {{ include "songbird.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "songbird.labels" -}}
helm.sh/chart: {{ include "songbird.chart" . }}
{{ include "songbird.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "songbird.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "songbird.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Namespaces the controller watches. In namespaced mode an empty list means the release namespace alone.
*/}}
{{- define "songbird.watchNamespaces" -}}
{{- if and .Values.rbac.namespaced (not .Values.watchNamespaces) }}
{{- .Release.Namespace }}
{{- else }}
{{- join "," .Values.watchNamespaces }}
{{- end }}
{{- end }}

{{/*
What the controller calls in the namespaces it watches, and nothing more (tests/chart/test_rbac.py derives
these from the requests a running controller makes and fails on any difference). Reads come from
list-then-watch caches, so no get:
- configmaps: list and watch the policies, patch their status annotation and cleanup finalizer;
- ingresses: list and watch them (the main Ingress, a foreign canary), create/patch/delete the canary
  Ingress, patch the main one at promotion;
- services, deployments: list and watch them (the Services the Ingresses route to, the stable Deployment);
- deployments/scale: patch spec.replicas of the canary and stable through the scale subresource, which
  cannot change what a Deployment runs;
- deployments: patch, only with rbac.placement (a policy's placement merges a nodeSelector into the
  canary's pod template; the right to patch a Deployment is the right to change its image);
- events: record what it did.
*/}}
{{- define "songbird.rbacRules" -}}
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: {{ if .Values.rbac.placement }}["list", "watch", "patch"]{{ else }}["list", "watch"]{{ end }}
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
Leader election: the controller's own Lease, in the release namespace only. Creating cannot be limited to a
name (the API checks create before the object exists); reading and renewing can.
*/}}
{{- define "songbird.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ .Values.controller.leaderElection.leaseName | quote }}]
  verbs: ["get", "update"]
{{- end }}

{{/*
The settings ConfigMap's data, also hashed into the pods' checksum/config annotation.
*/}}
{{- define "songbird.settings" -}}
SONGBIRD_PROMETHEUS_URL: {{ .Values.controller.prometheusUrl | quote }}
SONGBIRD_NAMESPACES: {{ include "songbird.watchNamespaces" . | quote }}
SONGBIRD_LOG_LEVEL: {{ .Values.controller.logLevel | quote }}
SONGBIRD_ANNOTATION_PREFIX: {{ .Values.controller.annotationPrefix | quote }}
SONGBIRD_METRICS_ADDRESS: {{ printf "0.0.0.0:%d" (int .Values.controller.metricsPort) | quote }}
SONGBIRD_LEASE_NAME: {{ .Values.controller.leaderElection.leaseName | quote }}
SONGBIRD_TICK_DEADLINE: {{ .Values.controller.tickDeadline | quote }}
SONGBIRD_PROMETHEUS_MAX_TIMEOUT: {{ .Values.controller.prometheusMaxTimeout | quote }}
SONGBIRD_PROMETHEUS_CONCURRENCY: {{ .Values.controller.prometheusConcurrency | quote }}
SONGBIRD_WORKERS: {{ .Values.controller.workers | quote }}
SONGBIRD_NAMESPACE_LABEL: {{ .Values.controller.namespaceLabel | quote }}
{{- end }}

{{/*
Whether the controller reads an endpoints file (--prometheus-endpoints) rather than --prometheus-url.
*/}}
{{- define "songbird.endpointsFile.enabled" -}}
{{- if or .Values.prometheus.endpoints .Values.prometheus.policyUrls }}true{{ end }}
{{- end }}

{{/*
Where an endpoint's mounted files live: /etc/songbird/prometheus/<endpoint>/{token,basic,ca}/.
*/}}
{{- define "songbird.endpointsDir" -}}/etc/songbird/prometheus{{- end }}

{{/*
The endpoints file (config/endpoints.py reads it): the chart's prometheus values, with Secret and ConfigMap
references turned into the paths of the files mounted from them. Without endpoints, controller.prometheusUrl
is the one endpoint, named default.
*/}}
{{- define "songbird.endpointsFile" -}}
{{- $dir := include "songbird.endpointsDir" . }}
{{- $endpoints := list }}
{{- range .Values.prometheus.endpoints }}
{{- $out := dict "name" .name "url" .url }}
{{- with .timeout }}{{ $_ := set $out "timeout" . }}{{ end }}
{{- if .bearerToken }}{{ $_ := set $out "bearerTokenFile" (printf "%s/%s/token/token" $dir .name) }}{{ end }}
{{- if .basicAuth }}
{{- $_ := set $out "basicAuth" (dict "usernameFile" (printf "%s/%s/basic/username" $dir .name) "passwordFile" (printf "%s/%s/basic/password" $dir .name)) }}
{{- end }}
{{- if .ca }}{{ $_ := set $out "caFile" (printf "%s/%s/ca/ca.crt" $dir .name) }}{{ end }}
{{- with .headers }}{{ $_ := set $out "headers" . }}{{ end }}
{{- with .namespaces }}{{ $_ := set $out "namespaces" . }}{{ end }}
{{- $endpoints = append $endpoints $out }}
{{- end }}
{{- $default := .Values.prometheus.default }}
{{- if not $endpoints }}
{{- $endpoints = list (dict "name" "default" "url" .Values.controller.prometheusUrl) }}
{{- end }}
{{- if not $default }}{{ $default = (first $endpoints).name }}{{ end }}
{{- $doc := dict "default" $default "endpoints" $endpoints }}
{{- with .Values.prometheus.policyUrls }}{{ $_ := set $doc "policyUrls" . }}{{ end }}
{{- toYaml $doc }}
{{- end }}
