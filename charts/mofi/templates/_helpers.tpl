{{/*
Names and labels. Every object carries app.kubernetes.io/part-of=mofi and the release instance, so
NetworkPolicy, Services and the ServiceMonitor select the release's pods without listing them.
*/}}
{{- define "mofi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mofi.fullname" -}}
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

{{/* The object name of one component: <fullname>-<component>, at most 63 characters. */}}
{{- define "mofi.componentName" -}}
{{- printf "%s-%s" (include "mofi.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mofi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mofi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mofi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mofi.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mofi
{{- end }}

{{/* Labels of one component; call with (dict "root" $ "name" $name). */}}
{{- define "mofi.componentSelectorLabels" -}}
{{ include "mofi.selectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "mofi.componentLabels" -}}
{{ include "mofi.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "mofi.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mofi.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mofi.pipelineServiceAccountName" -}}
{{- if .Values.pipeline.serviceAccount.create }}
{{- default (printf "%s-pipeline" (include "mofi.fullname" .)) .Values.pipeline.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.pipeline.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where pipeline runs execute their steps and torchx jobs: pipeline.namespace, else the release's. */}}
{{- define "mofi.pipelineNamespace" -}}
{{- default .Release.Namespace .Values.pipeline.namespace }}
{{- end }}

{{- define "mofi.image" -}}
{{- $ref := .Values.image.repository }}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if $tag }}{{ $ref = printf "%s:%s" $ref $tag }}{{ end }}
{{- if .Values.image.digest }}{{ $ref = printf "%s@%s" $ref .Values.image.digest }}{{ end }}
{{- $ref }}
{{- end }}

{{/*
A settings value as the string the settings loader parses: strings as they are, everything else
through toJson, which writes whole numbers without an exponent (toString would turn 33554432 into
3.3554432e+07, which an int setting rejects).
*/}}
{{- define "mofi.settingValue" -}}
{{- if kindIs "string" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{/* The gRPC port of a serve component: settings.<target>.port. */}}
{{- define "mofi.grpcPort" -}}
{{- $section := index .root.Values.settings .component.target | default dict }}
{{- if not (hasKey $section "port") }}
{{- fail (printf "components.%s: settings.%s has no port, so `mofi serve %s` cannot be exposed" .name .component.target .component.target) }}
{{- end }}
{{- index $section "port" | int }}
{{- end }}

{{- define "mofi.metricsPort" -}}
{{- .Values.settings.grpc.metrics_port | int }}
{{- end }}

{{/*
Credentials: MOFI_* variables from the Secret only. Secret keys are never settings values, so they
cannot leak into the ConfigMap (values.schema.json rejects them under `settings`).
*/}}
{{- define "mofi.credentialsEnv" -}}
{{- $c := .Values.credentials }}
- name: MOFI_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ $c.existingSecret | quote }}, key: {{ $c.keys.s3AccessKey | quote }}}
- name: MOFI_S3_SECRET_KEY
  valueFrom:
    secretKeyRef: {name: {{ $c.existingSecret | quote }}, key: {{ $c.keys.s3SecretKey | quote }}}
- name: MOFI_MILVUS_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ $c.existingSecret | quote }}, key: {{ $c.keys.milvusToken | quote }}, optional: true}
- name: MOFI_GRPC_AUTH_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ $c.existingSecret | quote }}, key: {{ $c.keys.grpcAuthToken | quote }}, optional: true}
- name: MOFI_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ $c.existingSecret | quote }}, key: {{ $c.keys.kafkaSaslUsername | quote }}, optional: true}
- name: MOFI_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $c.existingSecret | quote }}, key: {{ $c.keys.kafkaSaslPassword | quote }}, optional: true}
{{- end }}
