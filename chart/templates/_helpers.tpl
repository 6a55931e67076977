{{/*
Names and labels of every object of the chart. The other helpers are split by concern:
_pod.tpl (images, pod basics, replicas, spreading, disruption budgets), _redis.tpl (connection,
password, volumes), _otel.tpl (OpenTelemetry environment), _worker.tpl (the worker container),
_validation.tpl (cross-field checks), _observability.tpl (alert rules).
Every helper is namespaced with the chart name so a parent chart cannot collide with it.
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "wp-k8s-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every resource name (DNS label, at most 63 characters). */}}
{{- define "wp-k8s-service.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of a component's resources: (dict "root" $ "suffix" "worker"). */}}
{{- define "wp-k8s-service.componentName" -}}
{{- printf "%s-%s" (include "wp-k8s-service.fullname" .root) .suffix | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Chart name and version, as the helm.sh/chart label wants them. */}}
{{- define "wp-k8s-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: (dict "root" $ "component" "api"). Never change them: selectors are immutable. */}}
{{- define "wp-k8s-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wp-k8s-service.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* Full label set: (dict "root" $ "component" "api"); component may be empty for shared objects. */}}
{{- define "wp-k8s-service.labels" -}}
{{- $root := .root -}}
{{- $labels := dict
  "helm.sh/chart" (include "wp-k8s-service.chart" $root)
  "app.kubernetes.io/name" (include "wp-k8s-service.name" $root)
  "app.kubernetes.io/instance" $root.Release.Name
  "app.kubernetes.io/version" ($root.Chart.AppVersion | toString)
  "app.kubernetes.io/managed-by" $root.Release.Service
  "app.kubernetes.io/part-of" "wp-k8s-service"
-}}
{{- with .component -}}
{{- $_ := set $labels "app.kubernetes.io/component" . -}}
{{- end -}}
{{- toYaml (merge $labels (deepCopy $root.Values.commonLabels)) -}}
{{- end -}}

{{/* Name of the ServiceAccount the pods use. */}}
{{- define "wp-k8s-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wp-k8s-service.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}
