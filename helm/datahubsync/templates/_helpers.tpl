{{/*
The chart name, or nameOverride.
*/}}
{{- define "datahubsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A fully qualified name for the release's resources. Kept to 52 characters so that
the CronJob's Job names (the CronJob name plus an 11-character suffix) stay within
the 63 characters a label value allows.
*/}}
{{- define "datahubsync.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "datahubsync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "datahubsync.labels" -}}
helm.sh/chart: {{ include "datahubsync.chart" . }}
{{ include "datahubsync.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "datahubsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "datahubsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "datahubsync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "datahubsync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "datahubsync.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The Secret holding the hub token: the user's existingSecret, the one this chart
creates from hub.token, or "" when there is no token.
*/}}
{{- define "datahubsync.secretName" -}}
{{- if .Values.hub.existingSecret }}
{{- .Values.hub.existingSecret }}
{{- else if .Values.hub.token }}
{{- include "datahubsync.fullname" . }}
{{- end }}
{{- end }}

{{- define "datahubsync.secretKey" -}}
{{- if .Values.hub.existingSecret }}
{{- .Values.hub.existingSecretKey }}
{{- else }}
{{- "token" }}
{{- end }}
{{- end }}

{{/*
The data volume's PVC name when the chart uses one (existing or created), else "".
*/}}
{{- define "datahubsync.claimName" -}}
{{- if and .Values.persistence.enabled (not .Values.persistence.hostPath) }}
{{- default (printf "%s-data" (include "datahubsync.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}
{{- end }}

{{/*
Checks that the schema cannot express, each failing with a message that names
the value to fix. Every template that renders a pod includes this.
*/}}
{{- define "datahubsync.validate" -}}
{{- if not .Values.hub.url }}
{{- fail "hub.url is required: the data hub's base URL, e.g. --set hub.url=https://hub.example.com" }}
{{- end }}
{{- if and .Values.hub.token .Values.hub.existingSecret }}
{{- fail "hub.token and hub.existingSecret are both set: set only one (the token, or the name of a Secret that holds it)" }}
{{- end }}
{{- if and .Values.persistence.existingClaim .Values.persistence.hostPath }}
{{- fail "persistence.existingClaim and persistence.hostPath are both set: choose one data volume" }}
{{- end }}
{{- if and .Values.persistence.hostPath (not .Values.persistence.enabled) }}
{{- fail "persistence.hostPath is set but persistence.enabled is false: enable persistence or clear hostPath" }}
{{- end }}
{{- $owned := dict
  "DATAHUB_CONFIG" "config (mounted at /config/config.yaml)"
  "DATAHUB_URL" "hub.url"
  "DATAHUB__HUB__URL" "hub.url"
  "DATAHUB_TOKEN" "hub.token or hub.existingSecret (mounted as a file)"
  "DATAHUB__HUB__TOKEN" "hub.token or hub.existingSecret (mounted as a file)"
  "DATAHUB_TOKEN_FILE" "hub.token or hub.existingSecret (mounted as a file)"
  "TZ" "timeZone" }}
{{- range $name, $_ := .Values.env }}
{{- if hasKey $owned $name }}
{{- fail (printf "env.%s is set by the chart: use %s instead" $name (get $owned $name)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The container's environment. Settings the product reads from the environment
override its config file, so the chart sets only what it owns.
*/}}
{{- define "datahubsync.env" -}}
- name: DATAHUB_CONFIG
  value: /config/config.yaml
- name: DATAHUB_URL
  value: {{ .Values.hub.url | quote }}
{{- if include "datahubsync.secretName" . }}
- name: DATAHUB_TOKEN_FILE
  value: /run/secrets/datahub/token
{{- end }}
{{- /* The product's data root defaults to /data; follow the mount unless the user chose one. */}}
{{- $sync := default dict .Values.config.sync }}
{{- if and (ne .Values.persistence.mountPath "/data") (not (hasKey $sync "data_root")) (not (hasKey .Values.env "DATAHUB_DATA_ROOT")) (not (hasKey .Values.env "DATAHUB__SYNC__DATA_ROOT")) }}
- name: DATAHUB_DATA_ROOT
  value: {{ .Values.persistence.mountPath | quote }}
{{- end }}
- name: TZ
  value: {{ .Values.timeZone | quote }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
The pod template shared by the CronJob, the initial-sync Job and the helm test pod,
so all three run the program exactly the same way.
Call with (dict "ctx" $ "component" "sync" "args" (list "sync")), plus optional
"name" and "annotations" (a dict) for a bare Pod.
*/}}
{{- define "datahubsync.podTemplate" -}}
{{- $ctx := .ctx }}
{{- with $ctx -}}
metadata:
  {{- with $.name }}
  name: {{ . }}
  {{- end }}
  labels:
    {{- include "datahubsync.labels" . | nindent 4 }}
    app.kubernetes.io/component: {{ $.component }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- with $.annotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  restartPolicy: Never
  serviceAccountName: {{ include "datahubsync.serviceAccountName" . }}
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .Chart.Name }}
      image: {{ include "datahubsync.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- toYaml $.args | nindent 8 }}
      env:
        {{- include "datahubsync.env" . | nindent 8 }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: /config
          readOnly: true
        {{- if include "datahubsync.secretName" . }}
        - name: hub-token
          mountPath: /run/secrets/datahub
          readOnly: true
        {{- end }}
        - name: data
          mountPath: {{ .Values.persistence.mountPath }}
        # The root filesystem is read-only; the program and Python need a writable /tmp.
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "datahubsync.fullname" . }}
    {{- with include "datahubsync.secretName" . }}
    - name: hub-token
      secret:
        secretName: {{ . }}
        # Group-readable through fsGroup; without one, the file must be world-readable
        # for the non-root user to read it.
        defaultMode: {{ if (($ctx.Values.podSecurityContext | default dict).fsGroup) }}0440{{ else }}0444{{ end }}
        items:
          - key: {{ include "datahubsync.secretKey" $ctx }}
            path: token
    {{- end }}
    - name: data
      {{- if not .Values.persistence.enabled }}
      emptyDir: {}
      {{- else if .Values.persistence.hostPath }}
      hostPath:
        path: {{ .Values.persistence.hostPath }}
        # Directory, not DirectoryOrCreate: a directory the kubelet creates belongs to root
        # and the non-root program could not write it; failing to start says so plainly.
        type: Directory
      {{- else }}
      persistentVolumeClaim:
        claimName: {{ include "datahubsync.claimName" . }}
      {{- end }}
    - name: tmp
      emptyDir: {}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
The Job spec shared by the CronJob's jobTemplate and the initial-sync Job.
Call with (dict "ctx" $ "component" "sync").
*/}}
{{- define "datahubsync.jobSpec" -}}
{{- with .ctx -}}
backoffLimit: {{ .Values.backoffLimit }}
{{- if not (kindIs "invalid" .Values.activeDeadlineSeconds) }}
activeDeadlineSeconds: {{ .Values.activeDeadlineSeconds }}
{{- end }}
{{- if not (kindIs "invalid" .Values.ttlSecondsAfterFinished) }}
ttlSecondsAfterFinished: {{ .Values.ttlSecondsAfterFinished }}
{{- end }}
podFailurePolicy:
  rules:
    # Exit code 2 is a config or usage error: a retry would fail the same way.
    - action: FailJob
      onExitCodes:
        containerName: {{ .Chart.Name }}
        operator: In
        values: [2]
    # A node drain or preemption is not the program's failure: do not count it.
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
template:
  {{- include "datahubsync.podTemplate" (dict "ctx" . "component" $.component "args" (list "sync")) | nindent 2 }}
{{- end }}
{{- end }}
