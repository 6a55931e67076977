{{/* Validation: cross-field checks and the API groups optional objects need. */}}

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
{{- $api := .Values.api -}}
{{- if and (not $api.lifecycle) (ge (int $api.preStopSleepSeconds) (int $api.terminationGracePeriodSeconds)) (gt (int $api.preStopSleepSeconds) 0) -}}
{{- fail (printf "api.terminationGracePeriodSeconds (%v) must be greater than api.preStopSleepSeconds (%v): the grace period covers the preStop sleep and then the API's own shutdown" $api.terminationGracePeriodSeconds $api.preStopSleepSeconds) -}}
{{- end -}}
{{- if and (eq $w.mode "sidecar") $w.nativeSidecar -}}
{{- $native := add (int $api.terminationGracePeriodSeconds) $budget -}}
{{- if le (float64 $w.terminationGracePeriodSeconds) (float64 $native) -}}
{{- fail (printf "worker.terminationGracePeriodSeconds (%v) must be greater than api.terminationGracePeriodSeconds + worker.shutdownTimeout + worker.telemetryFlushTimeout (%v + %v + %v = %v) with worker.nativeSidecar: a native sidecar is stopped only after the API has exited" $w.terminationGracePeriodSeconds $api.terminationGracePeriodSeconds $w.shutdownTimeout $w.telemetryFlushTimeout $native) -}}
{{- end -}}
{{- end -}}
{{- if and (ne $w.mode "deployment") (eq $w.readinessProbe.path "/readyz") -}}
{{- fail (printf "worker.readinessProbe.path /readyz needs worker.mode=deployment (it is %s): /readyz fails while Redis is unreachable, and a sidecar's readiness is the API pod's, so a Redis outage would take every API pod out of its Service; use /healthz (or leave it empty)" $w.mode) -}}
{{- end -}}
{{- $live := $api.livenessProbe -}}
{{- $ready := $api.readinessProbe -}}
{{- if and $live.enabled $ready.enabled -}}
{{- $liveWindow := mul (int $live.periodSeconds) (int $live.failureThreshold) -}}
{{- $readyWindow := mul (int $ready.periodSeconds) (int $ready.failureThreshold) -}}
{{- if le $liveWindow $readyWindow -}}
{{- fail (printf "api.livenessProbe gives up after %vs (periodSeconds x failureThreshold = %v x %v), not later than api.readinessProbe (%vs = %v x %v): a pod that should only leave the Service would be restarted; make the liveness probe more tolerant" $liveWindow $live.periodSeconds $live.failureThreshold $readyWindow $ready.periodSeconds $ready.failureThreshold) -}}
{{- end -}}
{{- end -}}
{{- if and $w.keda.enabled (ne $w.mode "deployment") -}}
{{- fail "worker.keda.enabled requires worker.mode=deployment: KEDA scales a whole workload, and in sidecar mode that workload is the API Deployment (queue length would scale the API)" -}}
{{- end -}}
{{- if and $w.keda.enabled (lt (int $w.keda.maxReplicaCount) (int $w.keda.minReplicaCount)) -}}
{{- fail (printf "worker.keda.maxReplicaCount (%v) must be at least worker.keda.minReplicaCount (%v)" $w.keda.maxReplicaCount $w.keda.minReplicaCount) -}}
{{- end -}}
{{- if $w.keda.enabled -}}
{{- if and (eq (int $w.keda.minReplicaCount) 0) (gt (int $w.keda.activationJobs) 0) -}}
{{- fail (printf "worker.keda.activationJobs (%v) must be 0 when worker.keda.minReplicaCount is 0: with no worker running, fewer outstanding jobs than that would never get one" $w.keda.activationJobs) -}}
{{- end -}}
{{- with $w.keda.fallback -}}
{{- if not (and (hasKey . "failureThreshold") (hasKey . "replicas")) -}}
{{- fail "worker.keda.fallback needs both failureThreshold and replicas (or leave it empty for no fallback)" -}}
{{- end -}}
{{- if gt (int .replicas) (int $w.keda.maxReplicaCount) -}}
{{- fail (printf "worker.keda.fallback.replicas (%v) must be at most worker.keda.maxReplicaCount (%v)" .replicas $w.keda.maxReplicaCount) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.api.autoscaling.enabled (lt (int .Values.api.autoscaling.maxReplicas) (int .Values.api.autoscaling.minReplicas)) -}}
{{- fail (printf "api.autoscaling.maxReplicas (%v) must be at least api.autoscaling.minReplicas (%v)" .Values.api.autoscaling.maxReplicas .Values.api.autoscaling.minReplicas) -}}
{{- end -}}
{{- if and .Values.api.autoscaling.enabled (eq (int .Values.api.autoscaling.targetCPUUtilizationPercentage) 0) (eq (int .Values.api.autoscaling.targetMemoryUtilizationPercentage) 0) -}}
{{- fail "api.autoscaling.enabled needs api.autoscaling.targetCPUUtilizationPercentage or api.autoscaling.targetMemoryUtilizationPercentage above 0" -}}
{{- end -}}
{{- $r := .Values.redis -}}
{{- if $r.existingUrlSecret -}}
{{- $conflicts := list -}}
{{- range $name, $set := dict "redis.host" $r.host "redis.existingSecret" $r.existingSecret "redis.password" $r.password "redis.username" $r.username "redis.db" (ne (int $r.db) 0) "redis.tls.enabled" $r.tls.enabled "embeddedRedis.enabled" .Values.embeddedRedis.enabled -}}
{{- if $set }}{{ $conflicts = append $conflicts $name }}{{ end -}}
{{- end -}}
{{- with $conflicts -}}
{{- fail (printf "redis.existingUrlSecret and %s are mutually exclusive: the Secret's URL (redis://[user[:password]@]host[:port][/db], rediss:// for TLS) already says where Redis is and how to log in; remove %s, or remove redis.existingUrlSecret to use the host settings" (join ", " .) (join ", " .)) -}}
{{- end -}}
{{- if $w.keda.enabled -}}
{{- fail "redis.existingUrlSecret and worker.keda.enabled are mutually exclusive: KEDA's redis scaler takes a host:port address and a password, not a redis:// URL; to autoscale with KEDA use redis.host with the password in redis.existingSecret" -}}
{{- end -}}
{{- else if .Values.embeddedRedis.enabled -}}
{{- if .Values.redis.host -}}
{{- fail "redis.host must be empty when embeddedRedis.enabled is true: the API and the worker then connect to the embedded Redis Service" -}}
{{- end -}}
{{- if .Values.redis.username -}}
{{- fail "redis.username is not supported with embeddedRedis.enabled: the embedded Redis only has the default user" -}}
{{- end -}}
{{- if regexMatch "[\"\\\\\n]" .Values.redis.password -}}
{{- fail "redis.password must not contain a double quote, a backslash or a line break with embeddedRedis.enabled: the embedded Redis reads it as a quoted configuration value" -}}
{{- end -}}
{{- if .Values.redis.tls.enabled -}}
{{- fail "redis.tls.enabled is not supported with embeddedRedis.enabled: the embedded Redis serves plain TCP inside the namespace" -}}
{{- end -}}
{{- else if not .Values.redis.host -}}
{{- fail "redis.host is required: set it to your Redis host (for example redis-master.redis.svc.cluster.local), or name a Secret holding the whole Redis URL in redis.existingUrlSecret, or set embeddedRedis.enabled=true for a development Redis" -}}
{{- end -}}
{{- if and .Values.redis.existingSecret .Values.redis.password -}}
{{- fail "redis.password and redis.existingSecret are mutually exclusive: the password comes from redis.existingSecret (key redis.existingSecretPasswordKey); remove redis.password" -}}
{{- end -}}
{{- if and .Values.redis.tls.existingCaSecret (not .Values.redis.tls.enabled) (not .Values.redis.existingUrlSecret) -}}
{{- fail "redis.tls.existingCaSecret is set but redis.tls.enabled is false: enable TLS (or use a rediss:// URL in redis.existingUrlSecret) or remove the CA Secret" -}}
{{- end -}}
{{- range $name, $pdb := dict "api.podDisruptionBudget" .Values.api.podDisruptionBudget "worker.podDisruptionBudget" .Values.worker.podDisruptionBudget -}}
{{- if and $pdb.enabled (ne (toString $pdb.minAvailable) "") (ne (toString $pdb.maxUnavailable) "") -}}
{{- fail (printf "%s: set either minAvailable or maxUnavailable, not both (set maxUnavailable to \"\" to use minAvailable)" $name) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled .Values.networkPolicy.cloneEgressTo (not $w.clone.allowedHosts) -}}
{{- fail "networkPolicy.cloneEgressTo is set but worker.clone.allowedHosts is empty: clone jobs reach no site, so no clone egress is rendered; set the hosts or remove the peers" -}}
{{- end -}}
{{- $sm := .Values.serviceMonitor -}}
{{- if $sm.enabled -}}
{{- $timeout := include "wp-k8s-service.durationSeconds" $sm.scrapeTimeout | float64 -}}
{{- $interval := include "wp-k8s-service.durationSeconds" $sm.interval | float64 -}}
{{- if gt $timeout $interval -}}
{{- fail (printf "serviceMonitor.scrapeTimeout (%s) must not exceed serviceMonitor.interval (%s): Prometheus rejects such a scrape configuration" $sm.scrapeTimeout $sm.interval) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.tests.enabled (not (has "ping" $w.queues)) -}}
{{- fail (printf "tests.enabled needs a worker that consumes the ping queue, but worker.queues is [%s]: the helm test pod enqueues a ping job and would time out; add ping to worker.queues or set tests.enabled=false" (join ", " $w.queues)) -}}
{{- end -}}
{{- range $key, $value := .Values.otel.resourceAttributes -}}
{{- if has $key (list "service.name" "service.version" "service.instance.id" "deployment.environment" "k8s.namespace.name" "k8s.pod.name" "k8s.node.name" "k8s.container.name") -}}
{{- fail (printf "otel.resourceAttributes.%s is set by the chart; use otel.environment, otel.api.serviceName or otel.worker.serviceName instead" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Seconds of a Prometheus duration (`1m30s`, `500ms`), as a float. */}}
{{- define "wp-k8s-service.durationSeconds" -}}
{{- $units := dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 "d" 86400.0 "w" 604800.0 "y" 31536000.0 -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d|w|y)" (toString .) -1 -}}
{{- $total = addf $total (mulf (regexFind "^[0-9]+" . | float64) (index $units (regexFind "(ms|s|m|h|d|w|y)$" .))) -}}
{{- end -}}
{{- $total -}}
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
