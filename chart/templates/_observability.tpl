{{/* Helpers of prometheusrule.yaml. */}}

{{/* `labels:` of an alert: its severity, prometheusRule.alertLabels, and extra: (dict "root" $ "severity" "warning" "extra" dict). */}}
{{- define "wp-k8s-service.alertLabels" -}}
{{- $labels := merge (dict "severity" .severity) (.extra | default dict) (deepCopy .root.Values.prometheusRule.alertLabels) -}}
labels:
  {{- toYaml $labels | nindent 2 }}
{{- end -}}

{{/* `runbook_url: <prometheusRule.runbookUrlPrefix><alert in lower case>`, or nothing without a prefix. */}}
{{- define "wp-k8s-service.runbookUrl" -}}
{{- with .root.Values.prometheusRule.runbookUrlPrefix -}}
runbook_url: {{ printf "%s%s" . (lower $.alert) | quote }}
{{- end -}}
{{- end -}}
