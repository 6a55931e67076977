{{/* Images and the pod-level pieces shared by the API, worker, embedded Redis and test pods. */}}

{{/* Effective tag of an image block: (dict "root" $ "image" .Values.api.image). */}}
{{- define "wp-k8s-service.imageTag" -}}
{{- .image.tag | default .root.Chart.AppVersion | toString -}}
{{- end -}}

{{/* Image reference: repository:tag, plus @digest when pinned. */}}
{{- define "wp-k8s-service.image" -}}
{{- $ref := printf "%s:%s" .image.repository (include "wp-k8s-service.imageTag" .) -}}
{{- if .image.digest -}}
{{- $ref = printf "%s@%s" $ref .image.digest -}}
{{- end -}}
{{- $ref -}}
{{- end -}}

{{/* Pod-level settings every pod of the chart shares. */}}
{{- define "wp-k8s-service.podCommon" -}}
serviceAccountName: {{ include "wp-k8s-service.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Topology spread constraints: (dict "root" $ "component" "api" "constraints" list). Entries without a
labelSelector get the component's selector labels, so the defaults need no release-specific values.
*/}}
{{- define "wp-k8s-service.topologySpreadConstraints" -}}
{{- $selector := include "wp-k8s-service.selectorLabels" . | fromYaml -}}
{{- $out := list -}}
{{- range .constraints -}}
{{- $c := deepCopy . -}}
{{- if not (hasKey $c "labelSelector") -}}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $selector) -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* PodDisruptionBudget bounds: minAvailable or maxUnavailable (a values block). */}}
{{- define "wp-k8s-service.pdbBounds" -}}
{{- if ne (toString .minAvailable) "" -}}
minAvailable: {{ .minAvailable }}
{{- else -}}
maxUnavailable: {{ .maxUnavailable }}
{{- end -}}
{{- end -}}
