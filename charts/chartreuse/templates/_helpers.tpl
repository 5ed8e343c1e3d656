{{/*
The name of the objects this chart names itself (the run's ConfigMap and the run's
generateName): the release's and the chart's (its alias, when the application depends
on it twice, one database each); the WorkflowTemplate, Pipeline, Tasks and RBAC keep
their fixed names.
*/}}
{{- define "chartreuse.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "chartreuse.labels" -}}
app.kubernetes.io/name: chartreuse
app.kubernetes.io/component: schema-migration
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
{{- end -}}

{{/*
chartreuse.parameters: the run's parameters, as a YAML list of {name, value}, in the
order of the WorkflowTemplate's and Pipeline's parameters. Every value is a string, as
both engines take them. README.md maps each value to its parameter.
*/}}
{{- define "chartreuse.parameters" -}}
{{- $v := .Values -}}
{{- $argo := eq $v.engine "argo" -}}
{{- /* Tekton's list Pipeline declares fewer parameters: those of Patroni, the
credentials Secrets' names and retry-transient-for are the single Pipeline's */ -}}
{{- $list := gt (len $v.databases.list) 0 -}}
{{- $single := or $argo (not $list) -}}
{{- $ps := list -}}
{{- $ps = append $ps (dict "name" "image" "value" (toString $v.image)) -}}
{{- $ps = append $ps (dict "name" "database-secret" "value" (toString $v.database.secret)) -}}
{{- $ps = append $ps (dict "name" "database-secret-key" "value" (toString $v.database.secretKey)) -}}
{{- $ps = append $ps (dict "name" "migrations-dir" "value" (toString $v.migrations.dir)) -}}
{{- $ps = append $ps (dict "name" "git-url" "value" (toString $v.migrations.git.url)) -}}
{{- $ps = append $ps (dict "name" "git-revision" "value" (toString $v.migrations.git.revision)) -}}
{{- $ps = append $ps (dict "name" "migrations-image" "value" (toString $v.migrations.image)) -}}
{{- if $single -}}{{- $ps = append $ps (dict "name" "registry-credentials-secret" "value" (toString $v.migrations.registryCredentialsSecret)) -}}{{- end -}}
{{- $ps = append $ps (dict "name" "insecure-registry" "value" (toString $v.migrations.insecureRegistry)) -}}
{{- if $single -}}{{- $ps = append $ps (dict "name" "git-credentials-secret" "value" (toString $v.migrations.git.credentialsSecret)) -}}{{- end -}}
{{- $ps = append $ps (dict "name" "namespace" "value" (toString $v.workloads.namespace)) -}}
{{- $ps = append $ps (dict "name" "workload-selector" "value" (toString $v.workloads.selector)) -}}
{{- $ps = append $ps (dict "name" "workload" "value" (join "," $v.workloads.names)) -}}
{{- $ps = append $ps (dict "name" "stop-workloads" "value" (toString $v.workloads.stop)) -}}
{{- if $single -}}{{- $ps = append $ps (dict "name" "patroni" "value" (toString $v.patroni.enabled)) -}}{{- end -}}
{{- if $single -}}{{- $ps = append $ps (dict "name" "patroni-url" "value" (toString $v.patroni.url)) -}}{{- end -}}
{{- if $single -}}{{- $ps = append $ps (dict "name" "owner-role" "value" (toString $v.patroni.ownerRole)) -}}{{- end -}}
{{- if $single -}}{{- $ps = append $ps (dict "name" "writer-role" "value" (toString $v.patroni.writerRole)) -}}{{- end -}}
{{- if $single -}}{{- $ps = append $ps (dict "name" "reader-role" "value" (toString $v.patroni.readerRole)) -}}{{- end -}}
{{- $ps = append $ps (dict "name" "migrate-role" "value" (toString $v.migrations.role)) -}}
{{- $ps = append $ps (dict "name" "wait-timeout" "value" (toString $v.timeouts.wait)) -}}
{{- if $argo -}}
{{- $ps = append $ps (dict "name" "image-pull-timeout" "value" (toString $v.imagePullTimeout)) -}}
{{- $ps = append $ps (dict "name" "image-pull-secret" "value" (toString $v.imagePullSecret)) -}}
{{- end -}}
{{- if or $argo $list -}}
{{- $ps = append $ps (dict "name" "databases" "value" (ternary (toJson $v.databases.list) "" $list)) -}}
{{- $ps = append $ps (dict "name" "parallelism" "value" (toString $v.databases.parallelism)) -}}
{{- $ps = append $ps (dict "name" "canary" "value" (toString $v.databases.canary)) -}}
{{- end -}}
{{- if $single -}}{{- $ps = append $ps (dict "name" "patroni-timeout" "value" (toString $v.patroni.timeout)) -}}{{- end -}}
{{- $ps = append $ps (dict "name" "scale-timeout" "value" (toString $v.timeouts.scale)) -}}
{{- $ps = append $ps (dict "name" "wait-ready" "value" (toString $v.workloads.waitReady)) -}}
{{- $ps = append $ps (dict "name" "ready-timeout" "value" (toString $v.timeouts.ready)) -}}
{{- $ps = append $ps (dict "name" "lock-wait" "value" (toString $v.timeouts.lockWait)) -}}
{{- $ps = append $ps (dict "name" "lock-timeout" "value" (toString $v.timeouts.lock)) -}}
{{- $ps = append $ps (dict "name" "statement-timeout" "value" (toString $v.timeouts.statement)) -}}
{{- $ps = append $ps (dict "name" "to" "value" (toString $v.migrations.to)) -}}
{{- $ps = append $ps (dict "name" "allow-out-of-order" "value" (toString $v.migrations.allowOutOfOrder)) -}}
{{- $ps = append $ps (dict "name" "allow-empty-database" "value" (toString $v.database.allowEmpty)) -}}
{{- $ps = append $ps (dict "name" "accept-changed" "value" (toString $v.migrations.acceptChanged)) -}}
{{- $ps = append $ps (dict "name" "risk-policy" "value" (toString $v.migrations.riskPolicy)) -}}
{{- $ps = append $ps (dict "name" "table" "value" (toString $v.database.table)) -}}
{{- $ps = append $ps (dict "name" "on-migrate-failure" "value" (toString $v.onMigrateFailure)) -}}
{{- /* Tekton's default run-id is $(context.pipelineRun.name): given only when set. */ -}}
{{- if or $argo $v.runId -}}
{{- $ps = append $ps (dict "name" "run-id" "value" (toString $v.runId)) -}}
{{- end -}}
{{- if $single -}}{{- $ps = append $ps (dict "name" "retry-transient-for" "value" (toString $v.timeouts.retryTransientFor)) -}}{{- end -}}
{{- $ps = append $ps (dict "name" "log-format" "value" (toString $v.logFormat)) -}}
{{- if not $argo -}}
{{- $ps = append $ps (dict "name" "gate-timeout" "value" (toString $v.timeouts.gate)) -}}
{{- end -}}
{{- toYaml $ps -}}
{{- end -}}

{{/*
chartreuse.run: the Workflow (argo) or PipelineRun (tekton) that runs the migration
with the release's values, as `argo submit --from workflowtemplate/chartreuse` or
tekton/examples/pipelinerun.yaml would make it.
*/}}
{{- define "chartreuse.run" -}}
{{- $params := include "chartreuse.parameters" . | fromYamlArray -}}
{{- $labels := include "chartreuse.labels" . | fromYaml -}}
{{- $meta := dict "generateName" (printf "%s-" (include "chartreuse.fullname" .)) "labels" $labels -}}
{{- if eq .Values.engine "argo" -}}
{{- $spec := dict "workflowTemplateRef" (dict "name" "chartreuse") "arguments" (dict "parameters" $params) -}}
{{- toYaml (dict "apiVersion" "argoproj.io/v1alpha1" "kind" "Workflow" "metadata" $meta "spec" $spec) -}}
{{- else -}}
{{- $pod := dict "securityContext" (dict "runAsNonRoot" true "runAsUser" 65532 "runAsGroup" 65532 "fsGroup" 65532 "seccompProfile" (dict "type" "RuntimeDefault")) -}}
{{- if .Values.imagePullSecret -}}
{{- $_ := set $pod "imagePullSecrets" (list (dict "name" .Values.imagePullSecret)) -}}
{{- end -}}
{{- $specs := list -}}
{{- $list := gt (len .Values.databases.list) 0 -}}
{{- range $task := list "gate" "release-gate" -}}
{{- $specs = append $specs (dict "pipelineTaskName" $task "serviceAccountName" "chartreuse-gate") -}}
{{- end -}}
{{- if $list -}}
{{- /* as tekton/examples/databases-pipelinerun.yaml */ -}}
{{- $specs = prepend $specs (dict "pipelineTaskName" "check" "serviceAccountName" "chartreuse-check-databases") -}}
{{- range $task := list "rounds" "migrate" "rollback" -}}
{{- $specs = append $specs (dict "pipelineTaskName" $task "serviceAccountName" "chartreuse-pipeline-migrate") -}}
{{- end -}}
{{- else -}}
{{- range $task := list "plan" "migrate" "record-accepted" -}}
{{- $specs = append $specs (dict "pipelineTaskName" $task "serviceAccountName" "chartreuse-pipeline-migrate") -}}
{{- end -}}
{{- end -}}
{{- $spec := dict "pipelineRef" (dict "name" (ternary "chartreuse-databases" "chartreuse" $list)) "params" $params "taskRunSpecs" $specs "taskRunTemplate" (dict "serviceAccountName" "chartreuse-pipeline" "podTemplate" $pod) "timeouts" (dict "pipeline" "0") -}}
{{- toYaml (dict "apiVersion" "tekton.dev/v1" "kind" "PipelineRun" "metadata" $meta "spec" $spec) -}}
{{- end -}}
{{- end -}}

{{/*
chartreuse.seconds: a Go duration the schema accepts (90s, 5m, 1h30m, 1.5h, "0") in
whole seconds, rounded up.
*/}}
{{- define "chartreuse.seconds" -}}
{{- $units := dict "h" 3600.0 "m" 60.0 "s" 1.0 "ms" 0.001 "us" 0.000001 "µs" 0.000001 "ns" 0.000000001 -}}
{{- $total := 0.0 -}}
{{- range (regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h)" (toString .) -1) -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" . -}}
{{- $total = addf $total (mulf (float64 $num) (get $units (trimPrefix $num .))) -}}
{{- end -}}
{{- $total | ceil | int -}}
{{- end -}}

{{/*
chartreuse.budget: the longest the run's bounded steps may take, in seconds, one
attempt each: image pull (argo), wait-for-db and Patroni (when enabled), plan (its
wait for the database), scale-down, migrate's wait for the migration lock, scale-restore and its
wait for ready (when waitReady), and Tekton's gate. The migrations' own SQL time is
not bounded (only per statement, by timeouts.statement) and retries come on top.
*/}}
{{- define "chartreuse.budget" -}}
{{- $v := .Values -}}
{{- $s := 0 -}}
{{- if eq $v.engine "argo" -}}{{- $s = add $s (include "chartreuse.seconds" $v.imagePullTimeout) -}}{{- end -}}
{{- $s = add $s (include "chartreuse.seconds" $v.timeouts.wait) -}}
{{- if $v.patroni.enabled -}}{{- $s = add $s (include "chartreuse.seconds" $v.timeouts.wait) (include "chartreuse.seconds" $v.patroni.timeout) -}}{{- end -}}
{{- $s = add $s (include "chartreuse.seconds" $v.timeouts.scale) (include "chartreuse.seconds" $v.timeouts.lockWait) (include "chartreuse.seconds" $v.timeouts.scale) -}}
{{- if $v.workloads.waitReady -}}{{- $s = add $s (include "chartreuse.seconds" $v.timeouts.ready) -}}{{- end -}}
{{- if eq $v.engine "tekton" -}}{{- $s = add $s (include "chartreuse.seconds" $v.timeouts.gate) -}}{{- end -}}
{{- $s -}}
{{- end -}}

{{/* chartreuse.hookEvents: the Helm hooks of the hook Job and of what it needs. */}}
{{- define "chartreuse.hookEvents" -}}
{{- if eq .Values.hook.mode "pre" -}}post-install,pre-upgrade{{- else -}}post-install,post-upgrade{{- end -}}
{{- end -}}
