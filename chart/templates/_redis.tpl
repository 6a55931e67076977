{{/*
Redis: where it is, the password's Secret, and the environment and volumes that reach it. Two modes: the
host settings with the password in a Secret (the chart's own or redis.existingSecret), or the whole URL in
redis.existingUrlSecret ("URL mode"), which the chart only references and never reads.
*/}}

{{/* "true" in URL mode (redis.existingUrlSecret set), "" otherwise. */}}
{{- define "wp-k8s-service.redis.urlMode" -}}
{{- if .Values.redis.existingUrlSecret -}}true{{- end -}}
{{- end -}}

{{/* "true" when the chart renders its own password Secret: neither an existing password Secret nor URL mode. */}}
{{- define "wp-k8s-service.redis.managedSecret" -}}
{{- if not (or .Values.redis.existingSecret .Values.redis.existingUrlSecret) -}}true{{- end -}}
{{- end -}}

{{/* Host the API, the worker, the test pod and KEDA connect to. */}}
{{- define "wp-k8s-service.redis.host" -}}
{{- if .Values.embeddedRedis.enabled -}}
{{- printf "%s.%s.svc" (include "wp-k8s-service.componentName" (dict "root" . "suffix" "redis")) .Release.Namespace -}}
{{- else -}}
{{- .Values.redis.host -}}
{{- end -}}
{{- end -}}

{{/* Secret holding the Redis password: the user's, or the chart-managed one. */}}
{{- define "wp-k8s-service.redis.secretName" -}}
{{- if .Values.redis.existingSecret -}}
{{- .Values.redis.existingSecret -}}
{{- else -}}
{{- include "wp-k8s-service.componentName" (dict "root" . "suffix" "redis") -}}
{{- end -}}
{{- end -}}

{{/* Key of the password inside that Secret. */}}
{{- define "wp-k8s-service.redis.secretKey" -}}
{{- if .Values.redis.existingSecret -}}
{{- .Values.redis.existingSecretPasswordKey -}}
{{- else -}}
redis-password
{{- end -}}
{{- end -}}

{{/*
Password of the chart-managed Secret: redis.password, else the one already stored in the cluster
(so upgrades keep it), else a new random one. Computed once per render and kept in memory, so the
Secret and the checksum annotations that include it agree.
*/}}
{{- define "wp-k8s-service.redis.managedPassword" -}}
{{- if not (hasKey .Values.redis "_renderedPassword") -}}
{{- $password := .Values.redis.password -}}
{{- if not $password -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "wp-k8s-service.redis.secretName" .) -}}
{{- $password = dig "data" "redis-password" "" ($existing | default dict) | b64dec -}}
{{- end -}}
{{- if not $password -}}
{{- $password = randAlphaNum 32 -}}
{{- end -}}
{{- $_ := set .Values.redis "_renderedPassword" $password -}}
{{- end -}}
{{- index .Values.redis "_renderedPassword" -}}
{{- end -}}

{{- define "wp-k8s-service.redis.passwordDir" -}}/var/run/secrets/wp-k8s-service/redis{{- end -}}
{{- define "wp-k8s-service.redis.caDir" -}}/var/run/secrets/wp-k8s-service/redis-ca{{- end -}}

{{/*
Redis connection environment, identical for the API, the worker and the test pod. In URL mode only
REDIS_URL (from the Secret) and the CA file: the worker refuses REDIS_HOST, REDIS_PORT, REDIS_DB,
REDIS_USERNAME and REDIS_TLS next to REDIS_URL, and a password belongs in the URL.
*/}}
{{- define "wp-k8s-service.redis.env" -}}
{{- if include "wp-k8s-service.redis.urlMode" . -}}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingUrlSecret }}
      key: {{ .Values.redis.existingUrlSecretKey | quote }}
{{- else -}}
- name: REDIS_HOST
  value: {{ include "wp-k8s-service.redis.host" . | quote }}
- name: REDIS_PORT
  value: {{ .Values.redis.port | int | toString | quote }}
- name: REDIS_DB
  value: {{ .Values.redis.db | int | toString | quote }}
{{- with .Values.redis.username }}
- name: REDIS_USERNAME
  value: {{ . | quote }}
{{- end }}
{{- if eq .Values.redis.passwordMode "file" }}
- name: REDIS_PASSWORD_FILE
  value: {{ include "wp-k8s-service.redis.passwordDir" . }}/password
{{- else }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "wp-k8s-service.redis.secretName" . }}
      key: {{ include "wp-k8s-service.redis.secretKey" . | quote }}
{{- end }}
- name: REDIS_TLS
  value: {{ .Values.redis.tls.enabled | toString | quote }}
{{- end }}
{{- if .Values.redis.tls.existingCaSecret }}
- name: REDIS_TLS_CA_FILE
  value: {{ include "wp-k8s-service.redis.caDir" . }}/{{ .Values.redis.tls.caSecretKey }}
{{- end }}
{{- end -}}

{{/* Pod volumes behind the Redis environment (password file, CA bundle). */}}
{{- define "wp-k8s-service.redis.volumes" -}}
{{- if and (eq .Values.redis.passwordMode "file") (not (include "wp-k8s-service.redis.urlMode" .)) }}
- name: redis-password
  secret:
    secretName: {{ include "wp-k8s-service.redis.secretName" . }}
    # 0440: readable by the pod's fsGroup, never world-readable.
    defaultMode: 288
    items:
      - key: {{ include "wp-k8s-service.redis.secretKey" . | quote }}
        path: password
{{- end }}
{{- if .Values.redis.tls.existingCaSecret }}
- name: redis-ca
  secret:
    secretName: {{ .Values.redis.tls.existingCaSecret }}
    defaultMode: 292
    items:
      - key: {{ .Values.redis.tls.caSecretKey | quote }}
        path: {{ .Values.redis.tls.caSecretKey | quote }}
{{- end }}
{{- end -}}

{{/* Container mounts of those volumes. */}}
{{- define "wp-k8s-service.redis.volumeMounts" -}}
{{- if and (eq .Values.redis.passwordMode "file") (not (include "wp-k8s-service.redis.urlMode" .)) }}
- name: redis-password
  mountPath: {{ include "wp-k8s-service.redis.passwordDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.redis.tls.existingCaSecret }}
- name: redis-ca
  mountPath: {{ include "wp-k8s-service.redis.caDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/*
Checksum of everything the pods read from Secrets, so they roll when it changes: the managed Secret's
rendered data, or the name and key of the user's Secrets (their content is not visible to Helm: restart
the pods after rotating an existing Secret, the URL Secret included).
*/}}
{{- define "wp-k8s-service.redis.checksum" -}}
{{- $parts := dict "secret" (include "wp-k8s-service.redis.secretName" .) "key" (include "wp-k8s-service.redis.secretKey" .) "ca" .Values.redis.tls.existingCaSecret "caKey" .Values.redis.tls.caSecretKey -}}
{{- if include "wp-k8s-service.redis.urlMode" . -}}
{{- $parts = dict "urlSecret" .Values.redis.existingUrlSecret "urlKey" .Values.redis.existingUrlSecretKey "ca" .Values.redis.tls.existingCaSecret "caKey" .Values.redis.tls.caSecretKey -}}
{{- else if include "wp-k8s-service.redis.managedSecret" . -}}
{{- $_ := set $parts "managed" (include (print .Template.BasePath "/redis-secret.yaml") .) -}}
{{- end -}}
{{- toJson $parts | sha256sum -}}
{{- end -}}
