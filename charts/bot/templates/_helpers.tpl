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

{{/* Pod annotations: the config checksum (pods restart when configuration changes),
     Vault Agent injection when secrets come from Vault, and the user's own. */}}
{{- define "bot.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
botfleet.io/model-version: {{ .Values.model.version | quote }}
{{- if eq .Values.secrets.provider "vault" }}
vault.hashicorp.com/agent-inject: "true"
vault.hashicorp.com/role: {{ .Values.secrets.vault.role | quote }}
vault.hashicorp.com/auth-path: {{ .Values.secrets.vault.authPath | default "auth/kubernetes" | quote }}
{{- with .Values.secrets.vault.address }}
vault.hashicorp.com/service: {{ . | quote }}
{{- end }}
{{- range .Values.channels }}
{{- if and .credentialsFrom .credentialsFrom.vaultPath }}
vault.hashicorp.com/agent-inject-secret-{{ .type }}: {{ .credentialsFrom.vaultPath | quote }}
vault.hashicorp.com/agent-inject-template-{{ .type }}: |
  {{`{{- with secret "`}}{{ .credentialsFrom.vaultPath }}{{`" -}}{{ range $k, $v := .Data.data }}export {{ $k }}="{{ $v }}"
  {{ end }}{{- end }}`}}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.podTemplate.annotations }}
{{ toYaml . }}
{{- end }}
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
