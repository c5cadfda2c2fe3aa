{{/* The bot's name: the Bot resource's (or the Helm release's) name. */}}
{{- define "bot.name" -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{- end -}}

{{- define "bot.labels" -}}
app.kubernetes.io/name: botfleet-bot
app.kubernetes.io/instance: {{ include "bot.name" . }}
app.kubernetes.io/part-of: botfleet
app.kubernetes.io/managed-by: {{ .Values.managedBy | default .Release.Service }}
botfleet.io/bot: {{ include "bot.name" . }}
{{- with .Values.podTemplate.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* selectorLabels COMPONENT: immutable selector of one component's pods. */}}
{{- define "bot.selectorLabels" -}}
app.kubernetes.io/instance: {{ include "bot.name" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "bot.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1001
runAsGroup: 1001
fsGroup: 1001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "bot.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Scheduling and identity shared by every pod (spec.podTemplate). */}}
{{- define "bot.podExtras" -}}
{{- with .Values.podTemplate }}
{{- if .serviceAccountName }}
serviceAccountName: {{ .serviceAccountName }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Pod annotations: the config checksum (pods restart when configuration changes)
     and the user's own. */}}
{{- define "bot.podAnnotations" -}}
{{ include "bot.podAnnotationsFor" (dict "root" . "modelVersion" .Values.model.version) }}
{{- end -}}

{{/* podAnnotationsFor (dict root modelVersion): the same, for one rollout track's model. */}}
{{- define "bot.podAnnotationsFor" -}}
checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
botfleet.io/model-version: {{ .modelVersion | quote }}
{{- with .root.Values.podTemplate.annotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* tracks: the Rasa tracks to run, as a YAML list: the stable track (the Bot's model,
     Deployment "<bot>-rasa") and, while the operator runs a canary rollout, the canary
     track (the new model, "<bot>-rasa-canary"). The canary's pods get their own
     component label so that the stable Deployment's (immutable) selector and the
     "<bot>-rasa" Service never match them; botfleet.io/track tells the two apart in
     metrics. */}}
{{- define "bot.tracks" -}}
- track: stable
  suffix: ""
  component: rasa
  model: {{- toYaml .Values.model | nindent 4 }}
  replicas: {{ .Values.rasa.replicas }}
  autoscaled: {{ .Values.rasa.autoscaling.enabled }}
  modelServing: {{ include "bot.name" . }}-model-serving
{{- if .Values.canary.enabled }}
- track: canary
  suffix: -canary
  component: rasa-canary
  model: {{- toYaml .Values.canary.model | nindent 4 }}
  replicas: {{ .Values.canary.replicas }}
  autoscaled: false
  modelServing: {{ include "bot.name" . }}-model-serving{{ if include "bot.canaryNeedsModelServing" . }}-canary{{ end }}
{{- end }}
{{- end -}}

{{/* canaryNeedsModelServing: non-empty when the canary's NLU model differs from the
     stable one's, so the canary track gets a model-serving Deployment of its own. */}}
{{- define "bot.canaryNeedsModelServing" -}}
{{- if and .Values.modelServing.enabled .Values.canary.enabled -}}
{{- if or (ne (.Values.canary.model.nluModelTag | default "") (.Values.model.nluModelTag | default "")) (ne (.Values.canary.model.nluModelUrl | default "") (.Values.model.nluModelUrl | default "")) -}}
true
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Vault Agent Injector annotations, for Rasa's pods only: Rasa is the only
     component that reads channel and event-broker credentials, so the other pods get
     neither an agent nor a Vault token. Rasa sources the files once at start, so an
     init container suffices (pre-populate-only): no sidecar renewing secrets that
     are never read again; a rotated secret takes effect on the next rollout. */}}
{{- define "bot.vaultAnnotations" -}}
{{- if eq .Values.secrets.provider "vault" }}
vault.hashicorp.com/agent-inject: "true"
vault.hashicorp.com/agent-pre-populate-only: "true"
vault.hashicorp.com/role: {{ .Values.secrets.vault.role | quote }}
vault.hashicorp.com/auth-path: {{ .Values.secrets.vault.authPath | default "auth/kubernetes" | quote }}
{{- with .Values.secrets.vault.address }}
vault.hashicorp.com/service: {{ . | quote }}
{{- end }}
{{- range .Values.channels }}
{{- if and .credentialsFrom .credentialsFrom.vaultPath }}
{{- include "bot.vaultSecret" (dict "name" .type "path" .credentialsFrom.vaultPath "prefix" (printf "%s_" (upper .type))) }}
{{- end }}
{{- end }}
{{- with .Values.stores.eventBroker.credentialsFrom }}
{{- if .vaultPath }}
{{- include "bot.vaultSecret" (dict "name" "eventbroker" "path" .vaultPath "prefix" "EVENTBROKER_") }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* One Vault secret (KV v2: its keys are under .Data.data) as a file of shell
     exports. Keys get the same prefix as with credentialsFrom.secretName (envFrom
     prefix), so credentials.yml's ${SLACK_SLACK_TOKEN} works with either source.
     Values are single-quoted for the shell, with embedded quotes escaped. */}}
{{- define "bot.vaultSecret" }}
vault.hashicorp.com/agent-inject-secret-{{ .name }}: {{ .path | quote }}
vault.hashicorp.com/agent-inject-template-{{ .name }}: |
  {{`{{- with secret "`}}{{ .path }}{{`" -}}{{ range $k, $v := .Data.data }}`}}export {{ .prefix }}{{`{{ $k }}='{{ $v | replaceAll "'" "'\\''" }}'
  {{ end }}{{- end }}`}}
{{- end -}}

{{- define "bot.envFrom" -}}
{{- range .Values.secrets.envFrom }}
- secretRef:
    name: {{ .secretName }}
{{- end }}
{{- range .Values.channels }}
{{- if and .credentialsFrom .credentialsFrom.secretName }}
- secretRef:
    name: {{ .credentialsFrom.secretName }}
  prefix: {{ .type | upper }}_
{{- end }}
{{- end }}
{{- end -}}

{{- define "bot.resources" -}}
{{- if . }}
resources: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The Redis key prefix of this bot's trackers and locks. Rasa accepts only
     letters and digits, so the default is the bot's name without its dashes plus a
     hash of namespace/name: bots on one Redis never share a conversation, and two
     names that differ only in their dashes (or namespaces) still differ. */}}
{{- define "bot.keyPrefix" -}}
{{- if .Values.stores.tracker.keyPrefix -}}
{{ .Values.stores.tracker.keyPrefix }}
{{- else -}}
{{ regexReplaceAll "[^a-z0-9]" (include "bot.name" .) "" }}{{ printf "%s/%s" .Release.Namespace (include "bot.name" .) | sha256sum | trunc 8 }}
{{- end -}}
{{- end -}}

{{/* The event broker's queue (RabbitMQ) or topic (Kafka): this bot's own by default. */}}
{{- define "bot.eventQueue" -}}
{{ .Values.stores.eventBroker.queue | default (printf "botfleet.%s.%s.events" .Release.Namespace (include "bot.name" .)) }}
{{- end -}}

{{/* The Secret holding the token of Rasa's HTTP API: the Bot's own, or the one this
     chart generates (Helm) or the operator creates (Bots) when the spec names none. */}}
{{- define "bot.apiToken" -}}
{{- with .Values.secrets.apiTokenFrom -}}
name: {{ .name }}
key: {{ .key }}
{{- else -}}
name: {{ include "bot.name" . }}-api-token
key: token
{{- end -}}
{{- end -}}

{{/* Where the archive and the action server's business data go: the analytics
     database, or (only when the spec says ephemeral: true) SQLite on the pod's
     emptyDir. A real release with neither is refused: data must never vanish on a
     restart by default. */}}
{{- define "bot.databaseEnv" -}}
{{- $analytics := .root.Values.stores.analytics -}}
{{- with $analytics.databaseUrlFrom }}
- name: BOTFLEET_DATABASE_URL
  valueFrom: {secretKeyRef: {name: {{ .name }}, key: {{ .key }}}}
{{- else }}
{{- if and (not $analytics.ephemeral) .root.Values.model.url }}
{{- fail "stores.analytics: set databaseUrlFrom (a Secret with the PostgreSQL URL) or ephemeral: true (data on an emptyDir, lost on every restart)" }}
{{- end }}
- {name: BOTFLEET_DATABASE_URL, value: "sqlite:////tmp/{{ .file }}"}
{{- end }}
{{- end -}}
