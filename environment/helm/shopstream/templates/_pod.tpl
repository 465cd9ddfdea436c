{{/*
shopstream.pod is the pod template of a component (and of the bootstrap Job):
non-root, read-only root filesystem, no capabilities, its own ServiceAccount,
settings from the ConfigMap and credentials only from existing Secrets, as
files where the process reads a *_FILE or *_LOCATION setting.
*/}}
{{- define "shopstream.pod" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $c := .component -}}
{{- $cv := index $v $c -}}
{{- $facts := include "shopstream.facts" . | fromYaml -}}
{{- $user := include "shopstream.kafkaUser" . | fromYaml -}}
{{- $temporal := has "temporal" $facts.egress -}}
{{- $longRunning := ne $c "bootstrap" -}}
metadata:
  labels:
    {{- include "shopstream.labels" . | nindent 4 }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
spec:
  serviceAccountName: {{ include "shopstream.name" . }}
  # The processes never call the Kubernetes API.
  automountServiceAccountToken: false
  {{- with $v.image.pullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  {{- if $longRunning }}
  # The preStop sleep, then the component's bounded drain, then a margin.
  terminationGracePeriodSeconds: {{ add $v.preStopSeconds $cv.drainSeconds 5 }}
  {{- else }}
  restartPolicy: Never
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    fsGroup: 65532
    seccompProfile:
      type: RuntimeDefault
  {{- with $cv.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $cv.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $longRunning }}
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "shopstream.selectorLabels" . | nindent 10 }}
  {{- end }}
  containers:
    - name: {{ $c }}
      image: "{{ $v.image.repository }}:{{ $v.image.tag }}"
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args:
        - {{ $facts.command }}
        {{- if eq $c "bootstrap" }}
        - --partitions={{ $v.kafka.partitions }}
        - --replication-factor={{ $v.kafka.replicationFactor }}
        {{- if $v.bootstrap.acls }}
        - --acls
        {{- range $comp := list "worker" "streamer" "sink" "collector" "api" }}
        {{- with (include "shopstream.kafkaUser" (dict "root" $root "component" $comp) | fromYaml).username }}
        - --acl-users={{ $comp }}={{ . }}
        {{- end }}
        {{- end }}
        {{- end }}
        {{- end }}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        privileged: false
        capabilities:
          drop: [ALL]
      envFrom:
        - configMapRef:
            name: {{ include "shopstream.fullname" $root }}
        {{- if and (eq $c "collector") $v.blob.credentialsSecret }}
        - secretRef:
            name: {{ $v.blob.credentialsSecret }}
        {{- end }}
      env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- if eq $c "streamer" }}
        # The pod name, stable in a StatefulSet: see shopstream.facts.
        - name: STREAMER_INSTANCE_ID
          value: $(POD_NAME)
        - name: STREAMER_TRANSACTIONAL_ID
          value: $(POD_NAME)
        - name: STREAMER_GROUP
          value: {{ $v.streamer.group | quote }}
        - name: STREAMER_RECOMMENDER
          value: {{ ternary "on" "off" $v.streamer.recommender | quote }}
        - name: STREAMER_MAX_BATCH
          value: {{ $v.streamer.maxBatch | quote }}
        {{- else if eq $c "collector" }}
        - name: COLLECTOR_TRANSACTIONAL_ID
          value: $(POD_NAME)
        - name: COLLECTOR_GROUP
          value: {{ $v.collector.group | quote }}
        - name: IMAGE_FETCH_ALLOW_HOSTS
          value: {{ join "," $v.collector.fetchAllowHosts | quote }}
        {{- else if eq $c "sink" }}
        - name: SINK_GROUP
          value: {{ $v.sink.group | quote }}
        - name: SINK_BATCH_SIZE
          value: {{ $v.sink.batchSize | quote }}
        {{- else if eq $c "api" }}
        - name: API_ADDR
          value: "0.0.0.0:{{ $v.api.service.port }}"
        {{- if $v.api.auth.tokensSecret }}
        - name: API_TOKENS_FILE
          value: /etc/shopstream/api-tokens/{{ $v.api.auth.tokensKey }}
        {{- end }}
        {{- if $v.api.auth.insecureNoAuth }}
        - name: API_INSECURE_NO_AUTH
          value: "true"
        {{- end }}
        {{- end }}
        {{- if $user.username }}
        - name: KAFKA_SASL_USERNAME
          value: {{ $user.username | quote }}
        {{- end }}
        {{- if $user.secretName }}
        - name: KAFKA_SASL_PASSWORD_FILE
          value: /etc/shopstream/kafka-sasl/{{ $user.secretKey }}
        {{- end }}
        {{- with $v.kafka.sasl.oauthbearer.clientSecretSecret }}
        {{- if .name }}
        - name: KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE
          value: /etc/shopstream/kafka-oauth/{{ .key }}
        {{- end }}
        {{- end }}
        {{- with $v.kafka.tls }}
        {{- if .secret }}
        - name: KAFKA_SSL_CA_LOCATION
          value: /etc/shopstream/kafka-tls/{{ .caKey }}
        {{- if .certKey }}
        - name: KAFKA_SSL_CERTIFICATE_LOCATION
          value: /etc/shopstream/kafka-tls/{{ .certKey }}
        - name: KAFKA_SSL_KEY_LOCATION
          value: /etc/shopstream/kafka-tls/{{ .keyKey }}
        {{- end }}
        {{- end }}
        {{- end }}
        {{- if $v.schemaRegistry.passwordSecret.name }}
        - name: SCHEMA_REGISTRY_PASSWORD_FILE
          value: /etc/shopstream/registry/{{ $v.schemaRegistry.passwordSecret.key }}
        {{- end }}
        {{- if $v.schemaRegistry.bearerTokenSecret.name }}
        - name: SCHEMA_REGISTRY_BEARER_TOKEN_FILE
          value: /etc/shopstream/registry-token/{{ $v.schemaRegistry.bearerTokenSecret.key }}
        {{- end }}
        {{- if $v.schemaRegistry.tls.secret }}
        - name: SCHEMA_REGISTRY_SSL_CA_LOCATION
          value: /etc/shopstream/registry-tls/{{ $v.schemaRegistry.tls.caKey }}
        {{- end }}
        {{- if $temporal }}
        {{- with $v.temporal.tls }}
        {{- if .secret }}
        {{- if .certKey }}
        - name: TEMPORAL_TLS_CLIENT_CERT_PATH
          value: /etc/shopstream/temporal-tls/{{ .certKey }}
        - name: TEMPORAL_TLS_CLIENT_KEY_PATH
          value: /etc/shopstream/temporal-tls/{{ .keyKey }}
        {{- end }}
        {{- if .caKey }}
        - name: TEMPORAL_TLS_SERVER_CA_CERT_PATH
          value: /etc/shopstream/temporal-tls/{{ .caKey }}
        {{- end }}
        {{- end }}
        {{- end }}
        {{- if $v.temporal.apiKeySecret.name }}
        # The Temporal SDK reads its API key from the environment only.
        - name: TEMPORAL_API_KEY
          valueFrom:
            secretKeyRef:
              name: {{ $v.temporal.apiKeySecret.name }}
              key: {{ $v.temporal.apiKeySecret.key }}
        {{- end }}
        {{- end }}
        {{- if and $facts.database $v.postgres.dsnSecret.name }}
        - name: DATABASE_DSN
          valueFrom:
            secretKeyRef:
              name: {{ $v.postgres.dsnSecret.name }}
              key: {{ $v.postgres.dsnSecret.key }}
        {{- end }}
        {{- range $cv.extraEnv }}
        - name: {{ .name }}
          value: {{ .value | quote }}
        {{- end }}
      {{- if $longRunning }}
      ports:
        - name: {{ $facts.portName }}
          containerPort: {{ $facts.port }}
          protocol: TCP
      # /healthz answers once the process serves; the startup probe gives it
      # time to reach its dependencies (a consumer waits for the topics that
      # the post-install bootstrap creates) before liveness counts.
      startupProbe:
        httpGet:
          path: /healthz
          port: {{ $facts.portName }}
        periodSeconds: 5
        failureThreshold: 60
      livenessProbe:
        httpGet:
          path: /healthz
          port: {{ $facts.portName }}
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 3
      # Ready when its clients are connected and, for a consumer, its
      # partitions are assigned and the filter loaded.
      readinessProbe:
        httpGet:
          path: /readyz
          port: {{ $facts.portName }}
        periodSeconds: 5
        timeoutSeconds: 3
        failureThreshold: 3
      lifecycle:
        preStop:
          sleep:
            seconds: {{ $v.preStopSeconds }}
      {{- end }}
      resources:
        {{- toYaml $cv.resources | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: data
          mountPath: /data
        {{- if and (eq $c "collector") (not $v.blob.url) $v.blob.existingClaim }}
        - name: images
          mountPath: /data/images
        {{- end }}
        {{- if and (eq $c "api") $v.api.auth.tokensSecret }}
        - name: api-tokens
          mountPath: /etc/shopstream/api-tokens
          readOnly: true
        {{- end }}
        {{- if $user.secretName }}
        - name: kafka-sasl
          mountPath: /etc/shopstream/kafka-sasl
          readOnly: true
        {{- end }}
        {{- if $v.kafka.sasl.oauthbearer.clientSecretSecret.name }}
        - name: kafka-oauth
          mountPath: /etc/shopstream/kafka-oauth
          readOnly: true
        {{- end }}
        {{- if $v.kafka.tls.secret }}
        - name: kafka-tls
          mountPath: /etc/shopstream/kafka-tls
          readOnly: true
        {{- end }}
        {{- if $v.schemaRegistry.bearerTokenSecret.name }}
        - name: registry-token
          mountPath: /etc/shopstream/registry-token
          readOnly: true
        {{- end }}
        {{- if $v.schemaRegistry.tls.secret }}
        - name: registry-tls
          mountPath: /etc/shopstream/registry-tls
          readOnly: true
        {{- end }}
        {{- if $v.schemaRegistry.passwordSecret.name }}
        - name: registry
          mountPath: /etc/shopstream/registry
          readOnly: true
        {{- end }}
        {{- if and $temporal $v.temporal.tls.secret }}
        - name: temporal-tls
          mountPath: /etc/shopstream/temporal-tls
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    - name: data
      emptyDir:
        sizeLimit: 256Mi
    {{- if and (eq $c "collector") (not $v.blob.url) $v.blob.existingClaim }}
    - name: images
      persistentVolumeClaim:
        claimName: {{ $v.blob.existingClaim }}
    {{- end }}
    {{- if and (eq $c "api") $v.api.auth.tokensSecret }}
    # Mounted as a directory, not a subPath, so a revoked token reaches the
    # running API when the kubelet updates the file.
    - name: api-tokens
      secret:
        secretName: {{ $v.api.auth.tokensSecret }}
        defaultMode: 0440
        items:
          - key: {{ $v.api.auth.tokensKey }}
            path: {{ $v.api.auth.tokensKey }}
    {{- end }}
    {{- if $user.secretName }}
    - name: kafka-sasl
      secret:
        secretName: {{ $user.secretName }}
        defaultMode: 0440
        items:
          - key: {{ $user.secretKey }}
            path: {{ $user.secretKey }}
    {{- end }}
    {{- with $v.kafka.sasl.oauthbearer.clientSecretSecret }}
    {{- if .name }}
    - name: kafka-oauth
      secret:
        secretName: {{ .name }}
        defaultMode: 0440
        items:
          - key: {{ .key }}
            path: {{ .key }}
    {{- end }}
    {{- end }}
    {{- if $v.kafka.tls.secret }}
    - name: kafka-tls
      secret:
        secretName: {{ $v.kafka.tls.secret }}
        defaultMode: 0440
    {{- end }}
    {{- with $v.schemaRegistry.bearerTokenSecret }}
    {{- if .name }}
    - name: registry-token
      secret:
        secretName: {{ .name }}
        defaultMode: 0440
        items:
          - key: {{ .key }}
            path: {{ .key }}
    {{- end }}
    {{- end }}
    {{- if $v.schemaRegistry.tls.secret }}
    - name: registry-tls
      secret:
        secretName: {{ $v.schemaRegistry.tls.secret }}
        defaultMode: 0440
    {{- end }}
    {{- if $v.schemaRegistry.passwordSecret.name }}
    - name: registry
      secret:
        secretName: {{ $v.schemaRegistry.passwordSecret.name }}
        defaultMode: 0440
        items:
          - key: {{ $v.schemaRegistry.passwordSecret.key }}
            path: {{ $v.schemaRegistry.passwordSecret.key }}
    {{- end }}
    {{- if and $temporal $v.temporal.tls.secret }}
    - name: temporal-tls
      secret:
        secretName: {{ $v.temporal.tls.secret }}
        defaultMode: 0440
    {{- end }}
{{- end -}}
