{{/*
Names, labels and small decisions shared by the templates.
*/}}

{{- define "mothership.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The resource name prefix: the release name, plus the chart name unless the
release name already contains it.
*/}}
{{- define "mothership.fullname" -}}
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

{{- define "mothership.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mothership.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mothership.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "mothership.labels" -}}
helm.sh/chart: {{ include "mothership.chart" . }}
{{ include "mothership.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mothership
{{- end }}

{{- define "mothership.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mothership.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mothership.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "mothership.workerImage" -}}
{{- default (include "mothership.image" .) .Values.workerImage }}
{{- end }}

{{/* More than one replica runs kopf with --peering; one runs standalone. */}}
{{- define "mothership.peering" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{/* The Service name Prometheus scrapes; ServiceMonitor jobs take this name. */}}
{{- define "mothership.metricsServiceName" -}}
{{- printf "%s-metrics" (include "mothership.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
