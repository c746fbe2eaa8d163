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
these from the requests a running controller makes and fails on any difference). It polls; it never watches:
- configmaps: list the policies, read one, patch its status annotation;
- ingresses: read the main Ingress, list Ingresses to find a foreign canary, create/patch/delete the canary
  Ingress, patch the main one at promotion;
- services: read the Services the Ingresses route to;
- deployments: list them to find the stable one, read and scale the canary and stable, merge placement;
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
  verbs: ["list", "watch", "patch"]
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
