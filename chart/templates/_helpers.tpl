{{/*
Names, labels and the pieces shared by the API, worker, embedded Redis and test pods.
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
{{/*
Replicas of a Deployment whose count an autoscaler (HPA or KEDA) owns: the live count, so that
turning the autoscaler on, or any upgrade, never resets the running pods to the API server's
default of 1; on a first install (or `helm template`), the autoscaler's floor, at least 1 so a new
release (and its `helm test`) works before the autoscaler first acts.
(dict "root" . "name" "<Deployment name>" "floor" <minimum replicas>)
*/}}
{{- define "wp-k8s-service.autoscaledReplicas" -}}
{{- $live := lookup "apps/v1" "Deployment" .root.Release.Namespace .name -}}
{{- if and $live (hasKey ($live.spec | default dict) "replicas") -}}
{{- $live.spec.replicas -}}
{{- else -}}
{{- max .floor 1 -}}
{{- end -}}
{{- end -}}

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

{{/* ---------------------------------------------------------------- Redis */}}

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
{{- define "wp-k8s-service.clone.credentialsDir" -}}/var/run/secrets/wp-k8s-service/wordpress{{- end -}}
{{- define "wp-k8s-service.redis.caDir" -}}/var/run/secrets/wp-k8s-service/redis-ca{{- end -}}

{{/* Redis connection environment, identical for the API, the worker and the test pod. */}}
{{- define "wp-k8s-service.redis.env" -}}
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
{{- if .Values.redis.tls.existingCaSecret }}
- name: REDIS_TLS_CA_FILE
  value: {{ include "wp-k8s-service.redis.caDir" . }}/{{ .Values.redis.tls.caSecretKey }}
{{- end }}
{{- end -}}

{{/* Pod volumes behind the Redis environment (password file, CA bundle). */}}
{{- define "wp-k8s-service.redis.volumes" -}}
{{- if eq .Values.redis.passwordMode "file" }}
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
{{- if eq .Values.redis.passwordMode "file" }}
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
the pods after rotating an existing Secret).
*/}}
{{- define "wp-k8s-service.redis.checksum" -}}
{{- $parts := dict "secret" (include "wp-k8s-service.redis.secretName" .) "key" (include "wp-k8s-service.redis.secretKey" .) "ca" .Values.redis.tls.existingCaSecret "caKey" .Values.redis.tls.caSecretKey -}}
{{- if not .Values.redis.existingSecret -}}
{{- $_ := set $parts "managed" (include (print .Template.BasePath "/redis-secret.yaml") .) -}}
{{- end -}}
{{- toJson $parts | sha256sum -}}
{{- end -}}

{{/* ---------------------------------------------------------------- OpenTelemetry */}}

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

{{/* ---------------------------------------------------------------- Worker */}}

{{/* Effective grace period of a pod that runs the worker. */}}
{{- define "wp-k8s-service.worker.gracePeriod" -}}
{{- .Values.worker.terminationGracePeriodSeconds | int -}}
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

{{/* An HTTP probe on the worker's /healthz: (dict "probe" .Values.worker.livenessProbe). */}}
{{- define "wp-k8s-service.worker.probe" -}}
httpGet:
  path: /healthz
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
  {{- if $w.readinessProbe.enabled }}
  readinessProbe:
    {{- include "wp-k8s-service.worker.probe" (dict "probe" $w.readinessProbe) | nindent 4 }}
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

{{/* ---------------------------------------------------------------- Validation */}}

{{/*
Cross-field checks values.schema.json cannot express with a clear message. Included by the API
Deployment, which every release renders.
*/}}
{{- define "wp-k8s-service.validate" -}}
{{- $w := .Values.worker -}}
{{- $budget := addf $w.shutdownTimeout $w.telemetryFlushTimeout -}}
{{- if le (float64 $w.terminationGracePeriodSeconds) $budget -}}
{{- fail (printf "worker.terminationGracePeriodSeconds (%v) must be greater than worker.shutdownTimeout + worker.telemetryFlushTimeout (%v + %v = %v): Kubernetes would kill the worker before it finishes its jobs and flushes its spans" $w.terminationGracePeriodSeconds $w.shutdownTimeout $w.telemetryFlushTimeout $budget) -}}
{{- end -}}
{{- if and (eq $w.mode "sidecar") $w.nativeSidecar (semverCompare "<1.29-0" .Capabilities.KubeVersion.Version) -}}
{{- fail (printf "worker.nativeSidecar needs Kubernetes 1.29 or newer (native sidecar containers), the target is %s: set worker.nativeSidecar=false (helm template: pass --kube-version)" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- if and $w.keda.enabled (ne $w.mode "deployment") -}}
{{- fail "worker.keda.enabled requires worker.mode=deployment: KEDA scales a whole workload, and in sidecar mode that workload is the API Deployment (queue length would scale the API)" -}}
{{- end -}}
{{- if and $w.keda.enabled (lt (int $w.keda.maxReplicaCount) (int $w.keda.minReplicaCount)) -}}
{{- fail (printf "worker.keda.maxReplicaCount (%v) must be at least worker.keda.minReplicaCount (%v)" $w.keda.maxReplicaCount $w.keda.minReplicaCount) -}}
{{- end -}}
{{- if and .Values.api.autoscaling.enabled (lt (int .Values.api.autoscaling.maxReplicas) (int .Values.api.autoscaling.minReplicas)) -}}
{{- fail (printf "api.autoscaling.maxReplicas (%v) must be at least api.autoscaling.minReplicas (%v)" .Values.api.autoscaling.maxReplicas .Values.api.autoscaling.minReplicas) -}}
{{- end -}}
{{- if and .Values.api.autoscaling.enabled (eq (int .Values.api.autoscaling.targetCPUUtilizationPercentage) 0) (eq (int .Values.api.autoscaling.targetMemoryUtilizationPercentage) 0) -}}
{{- fail "api.autoscaling.enabled needs api.autoscaling.targetCPUUtilizationPercentage or api.autoscaling.targetMemoryUtilizationPercentage above 0" -}}
{{- end -}}
{{- if .Values.embeddedRedis.enabled -}}
{{- if .Values.redis.host -}}
{{- fail "redis.host must be empty when embeddedRedis.enabled is true: the API and the worker then connect to the embedded Redis Service" -}}
{{- end -}}
{{- if .Values.redis.username -}}
{{- fail "redis.username is not supported with embeddedRedis.enabled: the embedded Redis only has the default user" -}}
{{- end -}}
{{- if .Values.redis.tls.enabled -}}
{{- fail "redis.tls.enabled is not supported with embeddedRedis.enabled: the embedded Redis serves plain TCP inside the namespace" -}}
{{- end -}}
{{- else if not .Values.redis.host -}}
{{- fail "redis.host is required: set it to your Redis host (for example redis-master.redis.svc.cluster.local), or set embeddedRedis.enabled=true for a development Redis" -}}
{{- end -}}
{{- if and .Values.redis.existingSecret .Values.redis.password -}}
{{- fail "redis.password and redis.existingSecret are mutually exclusive: the password comes from redis.existingSecret (key redis.existingSecretPasswordKey); remove redis.password" -}}
{{- end -}}
{{- if and .Values.redis.tls.existingCaSecret (not .Values.redis.tls.enabled) -}}
{{- fail "redis.tls.existingCaSecret is set but redis.tls.enabled is false: enable TLS or remove the CA Secret" -}}
{{- end -}}
{{- range $name, $pdb := dict "api.podDisruptionBudget" .Values.api.podDisruptionBudget "worker.podDisruptionBudget" .Values.worker.podDisruptionBudget -}}
{{- if and $pdb.enabled (ne (toString $pdb.minAvailable) "") (ne (toString $pdb.maxUnavailable) "") -}}
{{- fail (printf "%s: set either minAvailable or maxUnavailable, not both (set maxUnavailable to \"\" to use minAvailable)" $name) -}}
{{- end -}}
{{- end -}}
{{- range $key, $value := .Values.otel.resourceAttributes -}}
{{- if has $key (list "service.name" "service.version" "service.instance.id" "deployment.environment" "k8s.namespace.name" "k8s.pod.name" "k8s.node.name" "k8s.container.name") -}}
{{- fail (printf "otel.resourceAttributes.%s is set by the chart; use otel.environment, otel.api.serviceName or otel.worker.serviceName instead" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Fail unless the cluster serves an API group/version, or the check is skipped:
(dict "root" $ "apiVersion" "monitoring.coreos.com/v1" "kind" "ServiceMonitor" "key" "serviceMonitor" "skip" bool).
*/}}
{{- define "wp-k8s-service.requireApi" -}}
{{- if not (or .skip (.root.Capabilities.APIVersions.Has .apiVersion)) -}}
{{- fail (printf "%s.enabled is true but the cluster does not serve %s (%s): install its CRDs first, or set %s.skipApiCheck=true to render it anyway (helm template: pass --api-versions %s)" .key .apiVersion .kind .key .apiVersion) -}}
{{- end -}}
{{- end -}}
