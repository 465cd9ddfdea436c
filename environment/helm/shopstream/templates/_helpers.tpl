{{/* Names and labels. */}}
{{- define "shopstream.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "shopstream.name" -}}
{{- printf "%s-%s" (include "shopstream.fullname" .root) .component -}}
{{- end -}}

{{- define "shopstream.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "shopstream.labels" -}}
{{ include "shopstream.selectorLabels" . }}
app.kubernetes.io/part-of: shopstream
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/*
shopstream.components lists the long-running components in a fixed order.
*/}}
{{- define "shopstream.components" -}}
[api, collector, sink, streamer, worker]
{{- end -}}

{{/*
shopstream.facts says what differs between components; the templates read it
instead of repeating a manifest per component.
  kind: StatefulSet for the transactional consumers (streamer, collector),
    whose transactional id is the pod name: a StatefulSet gives a restarted
    pod the same name (streamer-0 stays streamer-0), so its first
    InitProducerID fences the old process and aborts its open transaction at
    once, instead of leaving it to the transaction timeout while
    read_committed readers wait behind it. A Deployment names every new pod
    anew, so its restarted pod could not fence its predecessor.
  lag: the consumer group the lag autoscaler watches, and its topics.
*/}}
{{- define "shopstream.facts" -}}
{{- $v := .root.Values -}}
{{- $t := $v.topics -}}
{{- if eq .component "api" -}}
kind: Deployment
command: api
port: {{ $v.api.service.port }}
portName: http
database: true
egress: [kafka, schemaRegistry, postgres]
{{- else if eq .component "collector" -}}
kind: StatefulSet
command: collector
port: 9464
portName: metrics
database: true
egress: [kafka, schemaRegistry, postgres, blob, images]
group: {{ $v.collector.group }}
topics: [{{ $t.products }}]
{{- else if eq .component "sink" -}}
kind: Deployment
command: sink
port: 9464
portName: metrics
database: true
egress: [kafka, schemaRegistry, postgres]
group: {{ $v.sink.group }}
topics: [{{ $t.products }}, {{ $t.completeProducts }}, {{ $t.filtered }}, {{ $t.find }}, {{ $t.recommendations }}]
{{- else if eq .component "streamer" -}}
kind: StatefulSet
command: streamer
port: 9464
portName: metrics
database: false
egress: [kafka, schemaRegistry]
group: {{ $v.streamer.group }}
topics: [{{ $t.products }}]
{{- else if eq .component "worker" -}}
kind: Deployment
command: worker
port: 9464
portName: metrics
database: false
egress: [kafka, schemaRegistry, temporal, connect]
{{- else if eq .component "bootstrap" -}}
kind: Job
command: bootstrap
database: false
egress: [kafka, schemaRegistry, temporal]
{{- end -}}
{{- end -}}

{{/* shopstream.kafkaUser is the component's Kafka principal, or the default one. */}}
{{- define "shopstream.kafkaUser" -}}
{{- $v := .root.Values -}}
{{- $own := (index $v .component).kafkaUser | default dict -}}
{{- $secret := $own.passwordSecret | default $v.kafka.sasl.passwordSecret -}}
username: {{ $own.username | default $v.kafka.sasl.username | quote }}
secretName: {{ $secret.name | default "" | quote }}
secretKey: {{ $secret.key | default "password" | quote }}
{{- end -}}

{{/*
shopstream.checks fails on values that would deploy something broken, with
what to change.
*/}}
{{- define "shopstream.checks" -}}
{{- $v := .Values -}}
{{- range $url := list $v.schemaRegistry.url $v.kafkaConnectURL $v.ksqldbURL $v.blob.url -}}
{{- if regexMatch "^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@]*:[^/@]*@" $url -}}
{{- fail (printf "%s carries a password: it would land in a ConfigMap; give the URL without user:password@ and the password as a Secret (schemaRegistry.passwordSecret)" (regexReplaceAll "://[^@]*@" $url "://***@")) -}}
{{- end -}}
{{- end -}}
{{- range $c := include "shopstream.components" . | fromYamlArray -}}
{{- $cv := index $v $c -}}
{{- $facts := include "shopstream.facts" (dict "root" $ "component" $c) | fromYaml -}}
{{- if and $cv.enabled $facts.group -}}
{{- $most := ternary $cv.replicas $cv.autoscaling.maxReplicas (eq $v.autoscaling.mode "off") -}}
{{- if gt (int $most) (int $v.kafka.partitions) -}}
{{- fail (printf "%s: %d replicas but the topics have kafka.partitions=%d: a consumer group member beyond the partition count gets nothing to read; lower %s.%s or raise kafka.partitions" $c (int $most) (int $v.kafka.partitions) $c (ternary "replicas" "autoscaling.maxReplicas" (eq $v.autoscaling.mode "off"))) -}}
{{- end -}}
{{- end -}}
{{- if and $cv.enabled (gt (int $cv.autoscaling.minReplicas) (int $cv.autoscaling.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%d) is above maxReplicas (%d)" $c (int $cv.autoscaling.minReplicas) (int $cv.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- if and $cv.enabled $facts.database (ne $c "api") (not $v.postgres.dsnSecret.name) -}}
{{- fail (printf "%s needs PostgreSQL: set postgres.dsnSecret.name to an existing Secret holding the DSN (or %s.enabled=false)" $c $c) -}}
{{- end -}}
{{- end -}}
{{- if and $v.collector.enabled (not $v.blob.url) (not $v.blob.existingClaim) -}}
{{- fail "the collector needs blob storage every collector pod shares: set blob.url (s3://…) or blob.existingClaim (a PersistentVolumeClaim); a pod's own disk would lose the images with the pod" -}}
{{- end -}}
{{- if and (eq $v.autoscaling.mode "keda") (eq $v.autoscaling.keda.lagTrigger "kafka") (has $v.kafka.sasl.mechanism (list "OAUTHBEARER" "AWS_MSK_IAM")) -}}
{{- fail (printf "autoscaling.keda.lagTrigger=kafka cannot authenticate with %s: use lagTrigger=prometheus" $v.kafka.sasl.mechanism) -}}
{{- end -}}
{{- if and (has $v.kafka.securityProtocol (list "SASL_PLAINTEXT" "SASL_SSL")) (not $v.kafka.sasl.mechanism) -}}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.sasl.mechanism" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- /* What shopstream refuses at start (internal/config), refused here first. */ -}}
{{- if and $v.kafka.tls.secret (not (has $v.kafka.securityProtocol (list "SSL" "SASL_SSL"))) -}}
{{- fail (printf "kafka.tls.secret is set but kafka.securityProtocol=%s does not use TLS: set SSL or SASL_SSL" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if and $v.kafka.sasl.mechanism (not (has $v.kafka.securityProtocol (list "SASL_PLAINTEXT" "SASL_SSL"))) -}}
{{- fail (printf "kafka.sasl.mechanism=%s needs kafka.securityProtocol SASL_SSL (or SASL_PLAINTEXT)" $v.kafka.sasl.mechanism) -}}
{{- end -}}
{{- if has $v.kafka.sasl.mechanism (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512") -}}
{{- range $c := list "api" "collector" "sink" "streamer" "worker" "bootstrap" -}}
{{- $user := include "shopstream.kafkaUser" (dict "root" $ "component" $c) | fromYaml -}}
{{- if and (index $v $c).enabled (or (not $user.username) (not $user.secretName)) -}}
{{- fail (printf "%s: kafka.sasl.mechanism=%s needs a user and a password Secret: set kafka.sasl.username and kafka.sasl.passwordSecret.name (or %s.kafkaUser)" $c $v.kafka.sasl.mechanism $c) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (eq $v.kafka.sasl.mechanism "OAUTHBEARER") (or (not $v.kafka.sasl.oauthbearer.tokenEndpointURL) (not $v.kafka.sasl.oauthbearer.clientId) (not $v.kafka.sasl.oauthbearer.clientSecretSecret.name)) -}}
{{- fail "kafka.sasl.mechanism=OAUTHBEARER needs kafka.sasl.oauthbearer.tokenEndpointURL, clientId and clientSecretSecret.name" -}}
{{- end -}}
{{- if and (eq $v.kafka.sasl.mechanism "AWS_MSK_IAM") (ne $v.kafka.securityProtocol "SASL_SSL") -}}
{{- fail "kafka.sasl.mechanism=AWS_MSK_IAM works over TLS only: set kafka.securityProtocol=SASL_SSL" -}}
{{- end -}}
{{- if and $v.schemaRegistry.bearerTokenSecret.name $v.schemaRegistry.username -}}
{{- fail "schemaRegistry: set either username (basic auth) or bearerTokenSecret, not both" -}}
{{- end -}}
{{- end -}}
