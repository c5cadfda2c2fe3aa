{{/* The prefix of every name: "<release>-operator", so `helm install botfleet` gives
     botfleet-operator and botfleet-operator-metrics, the names the alerts expect. */}}
{{- define "botfleet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains "operator" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-operator" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "botfleet.selectorLabels" -}}
app.kubernetes.io/name: botfleet-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "botfleet.labels" -}}
{{ include "botfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: botfleet
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "botfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "botfleet.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "botfleet.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* "host" for a URL: an IPv6 address in brackets. */}}
{{- define "botfleet.urlHost" -}}
{{- if contains ":" . -}}[{{ . }}]{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{/* The operator's replicas: more than one only with peering. */}}
{{- define "botfleet.replicas" -}}
{{- if .Values.operator.peering -}}
{{- .Values.operator.replicas -}}
{{- else if gt (int .Values.operator.replicas) 1 -}}
{{- fail "operator.replicas above 1 needs operator.peering: true (standalone copies would all reconcile at once)" -}}
{{- else -}}
1
{{- end -}}
{{- end -}}

{{/* What the operator does inside a namespace it watches (tests/charts holds the
     reviewed table of these grants). In "all" mode these go into the ClusterRole; in
     "namespaces" mode into a Role in each watched namespace. Children are written by
     server-side apply (patch, also for its dry runs), listed and deleted when the Bot
     no longer wants them, and watched for drift. */}}
{{- define "botfleet.namespacedRules" -}}
- apiGroups: [botfleet.io]
  resources: [bots]
  verbs: [get, list, watch, patch]
- apiGroups: [botfleet.io]
  resources: [bots/status]
  verbs: [get, patch, update]
# kopf posts Events on the Bots it handles.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Existence checks of the Secrets a Bot references, and the API token Secret the
# operator creates once for a Bot that names none; never list, update or delete.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create]
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [ingresses, networkpolicies]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors]
  verbs: [get, list, watch, create, patch, delete]
{{- if and .Values.operator.peering (ne .Values.watch.mode "all") }}
# kopf's peering in each watched namespace: read, watch, and keep-alives in status.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end -}}

{{/* Cluster-scoped reads, needed in both modes: kopf discovers and watches CRDs (and
     the operator checks whether ServiceMonitor's exists); in namespaces mode kopf lists
     and watches namespaces to follow the watched ones as they come and go (without
     that it logs a warning and assumes they all exist). API discovery (/api, /apis)
     needs no grant: every authenticated user has system:discovery. */}}
{{- define "botfleet.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- if and .Values.operator.peering (eq .Values.watch.mode "all") }}
# kopf's cluster-wide peering: read, watch, and keep-alives in status.
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end -}}
