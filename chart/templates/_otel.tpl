{{/* OpenTelemetry: the SDK environment of the API and worker containers. */}}

{{/*
OpenTelemetry environment of one container: (dict "root" $ "container" "api" "serviceName" "..." "version" "...").
The downward API variables come first so OTEL_RESOURCE_ATTRIBUTES can reference them with $(...).
*/}}
{{- define "wp-k8s-service.otel.env" -}}
{{- $root := .root -}}
{{- $otel := $root.Values.otel -}}
{{- $attrs := list
  (printf "service.version=%s" .version)
  (printf "service.instance.id=$(POD_NAMESPACE).$(POD_NAME).%s" .container)
  (printf "deployment.environment=%s" ($otel.environment | default $root.Release.Namespace))
  "k8s.namespace.name=$(POD_NAMESPACE)"
  "k8s.pod.name=$(POD_NAME)"
  "k8s.node.name=$(NODE_NAME)"
  (printf "k8s.container.name=%s" .container)
-}}
{{- range $key, $value := $otel.resourceAttributes -}}
{{- $attrs = append $attrs (printf "%s=%s" $key (toString $value)) -}}
{{- end -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_SERVICE_NAME
  value: {{ .serviceName | quote }}
{{- /* The setup guide's variable for the same name (code may pass it to DramatiqTracing.setup). */}}
- name: DRAMATIQ_SERVICE_NAME
  value: {{ .serviceName | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
- name: OTEL_SDK_DISABLED
  value: {{ (not $otel.enabled) | toString | quote }}
- name: OTEL_TRACES_EXPORTER
  value: {{ $otel.tracesExporter | quote }}
{{- with $otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $otel.protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $otel.sampler | quote }}
{{- if hasSuffix "traceidratio" $otel.sampler }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $otel.samplerRatio | toString | quote }}
{{- end }}
- name: OTEL_PROPAGATORS
  value: {{ $otel.propagators | quote }}
{{- end -}}
