{{/* The worker container and what its pod needs for it (sidecar of the API, or its own Deployment). */}}

{{/* Where the clone's WordPress credentials Secret is mounted. */}}
{{- define "wp-k8s-service.clone.credentialsDir" -}}/var/run/secrets/wp-k8s-service/wordpress{{- end -}}

{{/* Effective grace period of a pod that runs the worker. */}}
{{- define "wp-k8s-service.worker.gracePeriod" -}}
{{- .Values.worker.terminationGracePeriodSeconds | int -}}
{{- end -}}

{{/* Jobs one worker pod runs at a time, times worker.keda.targetJobsPerThread: KEDA's target per pod. */}}
{{- define "wp-k8s-service.worker.kedaTarget" -}}
{{- $w := .Values.worker -}}
{{- mulf $w.processes $w.threads $w.keda.targetJobsPerThread | ceil | int -}}
{{- end -}}

{{/* Volumes the worker container needs besides the Redis ones. */}}
{{- define "wp-k8s-service.worker.volumes" -}}
- name: worker-tmp
  emptyDir:
    sizeLimit: {{ .Values.worker.tmpSizeLimit }}
- name: worker-metrics
  emptyDir:
    sizeLimit: {{ .Values.worker.metricsDirSizeLimit }}
{{- with .Values.worker.clone.credentialsSecret }}
- name: clone-credentials
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- with .Values.worker.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* An HTTP probe on the worker's metrics port: (dict "probe" .Values.worker.livenessProbe [ "path" "/readyz" ]);
the path defaults to /healthz. */}}
{{- define "wp-k8s-service.worker.probe" -}}
httpGet:
  path: {{ .path | default "/healthz" }}
  port: metrics
initialDelaySeconds: {{ .probe.initialDelaySeconds }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end -}}

{{/*
The worker container: (dict "root" $ "native" bool). With native true it is rendered as a native
sidecar (an init container with restartPolicy Always). The image's ENTRYPOINT runs the worker, so no
command is set.
*/}}
{{- define "wp-k8s-service.worker.container" -}}
{{- $root := .root -}}
{{- $w := $root.Values.worker -}}
- name: worker
  image: {{ include "wp-k8s-service.image" (dict "root" $root "image" $w.image) | quote }}
  imagePullPolicy: {{ $w.image.pullPolicy }}
  {{- if .native }}
  restartPolicy: Always
  {{- end }}
  ports:
    - name: metrics
      containerPort: {{ $w.metricsPort }}
      protocol: TCP
  env:
    {{- include "wp-k8s-service.otel.env" (dict "root" $root "container" "worker" "serviceName" $root.Values.otel.worker.serviceName "version" (include "wp-k8s-service.imageTag" (dict "root" $root "image" $w.image))) | nindent 4 }}
    {{- include "wp-k8s-service.redis.env" $root | nindent 4 }}
    - name: WORKER_QUEUES
      value: {{ join "," $w.queues | quote }}
    - name: WORKER_PROCESSES
      value: {{ $w.processes | int | toString | quote }}
    - name: WORKER_THREADS
      value: {{ $w.threads | int | toString | quote }}
    - name: WORKER_SHUTDOWN_TIMEOUT
      value: {{ $w.shutdownTimeout | toString | quote }}
    - name: WORKER_TELEMETRY_FLUSH_TIMEOUT
      value: {{ $w.telemetryFlushTimeout | toString | quote }}
    - name: WORKER_TRACE_ARGUMENTS
      value: {{ $w.traceArguments | toString | quote }}
    - name: WORKER_RESULT_TTL
      value: {{ $w.resultTtl | toString | quote }}
    - name: CLONE_ALLOWED_HOSTS
      value: {{ join "," $w.clone.allowedHosts | quote }}
    - name: CLONE_ALLOWED_NETWORKS
      value: {{ join "," $w.clone.allowedNetworks | quote }}
    - name: CLONE_HTTP_TIMEOUT
      value: {{ $w.clone.httpTimeout | toString | quote }}
    - name: CLONE_HTTP_RETRIES
      value: {{ $w.clone.httpRetries | int | toString | quote }}
    - name: CLONE_MAX_MEDIA_BYTES
      value: {{ $w.clone.maxMediaBytes | int64 | toString | quote }}
    {{- if $w.clone.credentialsSecret }}
    - name: CLONE_CREDENTIALS_DIR
      value: {{ include "wp-k8s-service.clone.credentialsDir" . | quote }}
    {{- end }}
    - name: METRICS_PORT
      value: {{ $w.metricsPort | int | toString | quote }}
    - name: PROMETHEUS_MULTIPROC_DIR
      value: {{ $w.metricsDir | quote }}
    - name: LOG_LEVEL
      value: {{ $w.logLevel | quote }}
    - name: LOG_FORMAT
      value: {{ $w.logFormat | quote }}
    {{- with $w.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $w.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $w.startupProbe.enabled }}
  startupProbe:
    {{- include "wp-k8s-service.worker.probe" (dict "probe" $w.startupProbe) | nindent 4 }}
  {{- end }}
  {{- if $w.livenessProbe.enabled }}
  livenessProbe:
    {{- include "wp-k8s-service.worker.probe" (dict "probe" $w.livenessProbe) | nindent 4 }}
  {{- end }}
  {{- $deploymentMode := eq $w.mode "deployment" }}
  {{- $ready := $w.readinessProbe }}
  {{- if ternary $deploymentMode $ready.enabled (eq (toString $ready.enabled) "auto") }}
  readinessProbe:
    {{- include "wp-k8s-service.worker.probe" (dict "probe" $ready "path" ($ready.path | default (ternary "/readyz" "/healthz" $deploymentMode))) | nindent 4 }}
  {{- end }}
  resources:
    {{- toYaml $w.resources | nindent 4 }}
  securityContext:
    {{- toYaml $w.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: worker-tmp
      mountPath: /tmp
    - name: worker-metrics
      mountPath: {{ $w.metricsDir }}
    {{- with include "wp-k8s-service.redis.volumeMounts" $root | trim }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- if $w.clone.credentialsSecret }}
    - name: clone-credentials
      mountPath: {{ include "wp-k8s-service.clone.credentialsDir" . }}
      readOnly: true
    {{- end }}
    {{- with $w.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}
