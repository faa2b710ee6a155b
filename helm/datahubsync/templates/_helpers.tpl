{{/*
The chart name, or nameOverride.
*/}}
{{- define "datahubsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A fully qualified name for the release's resources. Kept to 52 characters (the API
server's limit for a CronJob name) so that the CronJob's Job names (the CronJob name
plus "-" and an 8-digit time) stay within the 63 characters a label value allows.
The result never ends in "-" or "." (a release name may contain dots).
*/}}
{{- define "datahubsync.fullname" -}}
{{- $full := "" }}
{{- if .Values.fullnameOverride }}
{{- $full = .Values.fullnameOverride }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- $full = ternary .Release.Name (printf "%s-%s" .Release.Name $name) (contains $name .Release.Name) }}
{{- end }}
{{- regexReplaceAll "[-.]+$" ($full | trunc 52) "" }}
{{- end }}

{{/*
fullname + suffix within 63 characters. When the fullname has to be shortened, a hash
of it replaces the cut-off part, so two releases whose names differ only at the end
still get different names. Call with (list $ "-initial-sync").
*/}}
{{- define "datahubsync.suffixedName" -}}
{{- $ctx := index . 0 }}
{{- $suffix := index . 1 }}
{{- $full := include "datahubsync.fullname" $ctx }}
{{- $room := sub 63 (len $suffix) | int }}
{{- if le (len $full) $room }}
{{- printf "%s%s" $full $suffix }}
{{- else }}
{{- $head := regexReplaceAll "[-.]+$" ($full | trunc (sub $room 6 | int)) "" }}
{{- printf "%s-%s%s" $head ($full | sha256sum | trunc 5) $suffix }}
{{- end }}
{{- end }}

{{- define "datahubsync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The labels the chart sets itself; commonLabels and podLabels may not repeat them.
*/}}
{{- define "datahubsync.ownLabels" -}}
helm.sh/chart: {{ include "datahubsync.chart" . | quote }}
{{ include "datahubsync.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Every object's labels: the chart's own plus commonLabels.
*/}}
{{- define "datahubsync.labels" -}}
{{ include "datahubsync.ownLabels" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "datahubsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "datahubsync.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{/*
An object's annotations: commonAnnotations merged with the object's own map (which
wins on a shared key). Call with (list $ .Values.cronJobAnnotations); renders the
`annotations:` key only when there is something to put under it.
*/}}
{{- define "datahubsync.annotations" -}}
{{- $ctx := index . 0 }}
{{- $merged := merge (deepCopy (index . 1 | default dict)) (deepCopy ($ctx.Values.commonAnnotations | default dict)) }}
{{- with $merged -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "datahubsync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "datahubsync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
[registry/]repository:tag, or [registry/]repository@digest when a digest is set.
global.imageRegistry (set by a parent chart) wins over image.registry.
*/}}
{{- define "datahubsync.image" -}}
{{- $registry := default .Values.image.registry ((.Values.global | default dict).imageRegistry) }}
{{- $repository := ternary (printf "%s/%s" $registry .Values.image.repository) .Values.image.repository (ne $registry "") }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
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
hub.headersSecret as {Secret key: header name}: `keys` name their header themselves
(`_` and `-` both become `-`), `headers` maps a key to a header. Rendered as YAML
(read back with fromYaml); empty when no headers Secret is set.
*/}}
{{- define "datahubsync.headerItems" -}}
{{- $items := dict }}
{{- with .Values.hub.headersSecret }}
{{- range .keys }}
{{- $_ := set $items . (replace "_" "-" .) }}
{{- end }}
{{- range $key, $header := .headers }}
{{- $_ := set $items $key $header }}
{{- end }}
{{- end }}
{{- if $items }}
{{- toYaml $items }}
{{- end }}
{{- end }}

{{/*
The environment variable the program reads a header's file from:
CF-Access-Client-Id -> DATAHUB_HEADER_CF_ACCESS_CLIENT_ID_FILE.
*/}}
{{- define "datahubsync.headerVar" -}}
{{- printf "DATAHUB_HEADER_%s_FILE" (. | upper | replace "-" "_") }}
{{- end }}

{{/*
Where the pods mount metrics.textfile.hostPath; the program writes datahubsync.prom there.
*/}}
{{- define "datahubsync.textfileDir" -}}
/metrics-textfile
{{- end }}

{{/*
The sync pods' hostname: the CronJob's name (a DNS label: dots become "-"), the same
for every run. The program reports its host by hostname (the Pushgateway's instance
label, notifications); the pod name would start a new Pushgateway group at every run
and leave the old ones there, stale, for alerts to fire on.
*/}}
{{- define "datahubsync.hostname" -}}
{{- include "datahubsync.fullname" . | replace "." "-" }}
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
Environment variables the chart sets, each with the value to use instead; `env` and
`extraEnv` may not set them. Rendered as YAML (read back with fromYaml).
*/}}
{{- define "datahubsync.ownedEnv" -}}
{{- $token := "hub.token or hub.existingSecret (mounted as a file)" }}
{{- $owned := dict
  "DATAHUB_CONFIG" "config (mounted at /config/config.yaml)"
  "DATAHUB_URL" "hub.url"
  "DATAHUB__HUB__URL" "hub.url"
  "DATAHUB_TOKEN" $token
  "DATAHUB__HUB__TOKEN" $token
  "DATAHUB_TOKEN_FILE" $token
  "DATAHUB__HUB__TOKEN_FILE" $token
  "TZ" "timeZone" }}
{{- range $key, $header := include "datahubsync.headerItems" . | fromYaml }}
{{- $var := include "datahubsync.headerVar" $header }}
{{- $use := printf "hub.headersSecret (key %s)" $key }}
{{- $_ := set $owned $var $use }}
{{- $_ := set $owned (trimSuffix "_FILE" $var) $use }}
{{- end }}
{{- $metrics := .Values.metrics | default dict }}
{{- $pushgateway := $metrics.pushgateway | default dict }}
{{- if or $pushgateway.url $pushgateway.existingSecret }}
{{- $_ := set $owned "DATAHUB__METRICS__PUSHGATEWAY" "metrics.pushgateway.url or metrics.pushgateway.existingSecret" }}
{{- end }}
{{- if ($metrics.textfile | default dict).enabled }}
{{- $_ := set $owned "DATAHUB__METRICS__TEXTFILE" "metrics.textfile" }}
{{- end }}
{{- toYaml $owned }}
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
{{- include "datahubsync.validateHeaders" . }}
{{- include "datahubsync.validateMetrics" . }}
{{- include "datahubsync.validateEnv" . }}
{{- include "datahubsync.validateVolumes" . }}
{{- include "datahubsync.validateMetadata" . }}
{{- end }}

{{- define "datahubsync.validateHeaders" -}}
{{- $hs := .Values.hub.headersSecret | default dict }}
{{- $items := include "datahubsync.headerItems" . | fromYaml }}
{{- if and $hs.name (not $items) }}
{{- fail (printf "hub.headersSecret.name is %s but no key is listed: set hub.headersSecret.keys (keys named like their header, e.g. [CF-Access-Client-Id]) or hub.headersSecret.headers (key: Header-Name)" $hs.name) }}
{{- end }}
{{- if and $items (not $hs.name) }}
{{- fail "hub.headersSecret lists keys but no Secret: set hub.headersSecret.name" }}
{{- end }}
{{- range $hs.keys }}
{{- if hasKey ($hs.headers | default dict) . }}
{{- fail (printf "hub.headersSecret: key %s is in both keys and headers: list it once" .) }}
{{- end }}
{{- end }}
{{- $seen := dict }}
{{- range $key, $header := $items }}
{{- $var := include "datahubsync.headerVar" $header }}
{{- if hasKey $seen $var }}
{{- fail (printf "hub.headersSecret: keys %s and %s both send the header %s: map each header once" (get $seen $var) $key $header) }}
{{- end }}
{{- $_ := set $seen $var $key }}
{{- if and (eq (lower $header) "authorization") (include "datahubsync.secretName" $) }}
{{- fail (printf "hub.headersSecret: key %s sends Authorization, which the hub token (hub.token or hub.existingSecret) already sets: use one of them" $key) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
metrics.pushgateway.url is checked here, not by the schema: a schema error repeats the
value, and a URL may carry a password. These messages never show the URL. The rules
are the program's own (it refuses anything else with exit code 2 at the first run).
*/}}
{{- define "datahubsync.validateMetrics" -}}
{{- $metrics := .Values.metrics | default dict }}
{{- $pushgateway := $metrics.pushgateway | default dict }}
{{- $textfile := $metrics.textfile | default dict }}
{{- with $pushgateway.url }}
{{- if $pushgateway.existingSecret }}
{{- fail "metrics.pushgateway.url and metrics.pushgateway.existingSecret are both set: set only one (the URL, or the name of a Secret that holds it)" }}
{{- end }}
{{- $authority := regexReplaceAll "(?s)^[A-Za-z][-+.A-Za-z0-9]*://([^/?#]*).*$" . "${1}" }}
{{- if and (regexMatch "^[A-Za-z][-+.A-Za-z0-9]*://" .) (contains "@" $authority) }}
{{- fail "metrics.pushgateway.url carries a user or password, which the pod spec would show to anyone who may read the CronJob: put the whole URL in a Secret and name it in metrics.pushgateway.existingSecret (the value is not repeated here)" }}
{{- end }}
{{- if not (regexMatch "^https?://([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\\[[0-9A-Fa-f:.]+\\])(:[0-9]{1,5})?(/[^\\s?#]*)?$" .) }}
{{- fail "metrics.pushgateway.url: expected an http:// or https:// URL with a host, an optional port and path, and no spaces, query or fragment, e.g. http://pushgateway.monitoring:9091 (the value is not repeated here)" }}
{{- end }}
{{- $port := regexReplaceAll "^https?://([^/]*\\]|[^/:]*)(:([0-9]*))?.*$" . "${3}" }}
{{- if and $port (or (lt (atoi $port) 1) (gt (atoi $port) 65535)) }}
{{- fail "metrics.pushgateway.url: the port must be a number from 1 to 65535" }}
{{- end }}
{{- end }}
{{- if $textfile.enabled }}
{{- if not $textfile.hostPath }}
{{- fail "metrics.textfile.enabled is true but metrics.textfile.hostPath is empty: set the node directory node_exporter reads (its --collector.textfile.directory), e.g. /var/lib/node_exporter/textfile_collector" }}
{{- end }}
{{- if regexMatch "(^|/)\\.\\.(/|$)" $textfile.hostPath }}
{{- fail (printf "metrics.textfile.hostPath %s contains \"..\": give the directory's own path" $textfile.hostPath) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "datahubsync.validateEnv" -}}
{{- $owned := include "datahubsync.ownedEnv" . | fromYaml }}
{{- range $name, $_ := .Values.env }}
{{- if hasKey $owned $name }}
{{- fail (printf "env.%s is set by the chart: use %s instead" $name (get $owned $name)) }}
{{- end }}
{{- end }}
{{- $seen := dict }}
{{- range $i, $item := .Values.extraEnv }}
{{- if hasKey $owned $item.name }}
{{- fail (printf "extraEnv[%d] (%s) is set by the chart: use %s instead" $i $item.name (get $owned $item.name)) }}
{{- end }}
{{- if hasKey $.Values.env $item.name }}
{{- fail (printf "extraEnv[%d] (%s) is also in env: set it in one place" $i $item.name) }}
{{- end }}
{{- if hasKey $seen $item.name }}
{{- fail (printf "extraEnv[%d] (%s) repeats extraEnv[%d]: set each variable once" $i $item.name (get $seen $item.name)) }}
{{- end }}
{{- $_ := set $seen $item.name $i }}
{{- end }}
{{- end }}

{{/*
extraVolumes and extraVolumeMounts may not reuse the chart's volume names or mount
paths (the API server would refuse the pod, or one mount would hide another).
*/}}
{{- define "datahubsync.validateVolumes" -}}
{{- $volumes := dict "config" "config" "data" "persistence" "tmp" "/tmp" "hub-token" "hub.token" "hub-headers" "hub.headersSecret" "metrics-textfile" "metrics.textfile" }}
{{- $paths := dict "/config" "config" "/tmp" "/tmp" "/run/secrets/datahub" "hub.token" "/run/secrets/datahub-headers" "hub.headersSecret" (include "datahubsync.textfileDir" .) "metrics.textfile" }}
{{- $dataPath := .Values.persistence.mountPath | trimSuffix "/" }}
{{- if hasKey $paths $dataPath }}
{{- fail (printf "persistence.mountPath: %s is already mounted by the chart (%s): choose another mountPath" .Values.persistence.mountPath (get $paths $dataPath)) }}
{{- end }}
{{- $_ := set $paths $dataPath "persistence.mountPath" }}
{{- $extra := dict }}
{{- range $i, $volume := .Values.extraVolumes }}
{{- if hasKey $volumes $volume.name }}
{{- fail (printf "extraVolumes[%d]: the name %s is the chart's own volume (%s): choose another name" $i $volume.name (get $volumes $volume.name)) }}
{{- end }}
{{- if hasKey $extra $volume.name }}
{{- fail (printf "extraVolumes[%d]: the name %s is used twice" $i $volume.name) }}
{{- end }}
{{- $_ := set $extra $volume.name $i }}
{{- end }}
{{- range $i, $mount := .Values.extraVolumeMounts }}
{{- if not (or (hasKey $extra $mount.name) (hasKey $volumes $mount.name)) }}
{{- fail (printf "extraVolumeMounts[%d]: no volume named %s (add it to extraVolumes)" $i $mount.name) }}
{{- end }}
{{- $path := $mount.mountPath | trimSuffix "/" }}
{{- if hasKey $paths $path }}
{{- fail (printf "extraVolumeMounts[%d]: %s is already mounted by the chart (%s): choose another mountPath" $i $mount.mountPath (get $paths $path)) }}
{{- end }}
{{- $_ := set $paths $path (printf "extraVolumeMounts[%d]" $i) }}
{{- end }}
{{- end }}

{{/*
User label and annotation maps may not repeat the keys the chart sets itself: a
duplicate key is either refused by the API server or silently wins one way.
*/}}
{{- define "datahubsync.validateMetadata" -}}
{{- $own := include "datahubsync.ownLabels" . | fromYaml }}
{{- $_ := set $own "app.kubernetes.io/component" "" }}
{{- range $value := list "commonLabels" "podLabels" }}
{{- range $key, $_ := (get $.Values $value) }}
{{- if hasKey $own $key }}
{{- fail (printf "%s.%s is set by the chart: remove it (use nameOverride to change app.kubernetes.io/name)" $value $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $value := list "commonAnnotations" "podAnnotations" "cronJobAnnotations" "jobAnnotations" }}
{{- range $key, $_ := (get $.Values $value) }}
{{- if eq $key "checksum/config" }}
{{- fail (printf "%s.%s is set by the chart: remove it" $value $key) }}
{{- end }}
{{- if hasPrefix "helm.sh/" $key }}
{{- fail (printf "%s.%s: helm.sh/ annotations change how Helm treats the object; the chart sets the ones it needs (persistence.resourcePolicy for the PVC)" $value $key) }}
{{- end }}
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
{{- range $key, $header := include "datahubsync.headerItems" . | fromYaml }}
- name: {{ include "datahubsync.headerVar" $header }}
  value: {{ printf "/run/secrets/datahub-headers/%s" $header | quote }}
{{- end }}
{{- /* The product's data root defaults to /data; follow the mount unless the user chose one. */}}
{{- $sync := default dict .Values.config.sync }}
{{- if and (ne .Values.persistence.mountPath "/data") (not (hasKey $sync "data_root")) (not (hasKey .Values.env "DATAHUB_DATA_ROOT")) (not (hasKey .Values.env "DATAHUB__SYNC__DATA_ROOT")) }}
- name: DATAHUB_DATA_ROOT
  value: {{ .Values.persistence.mountPath | quote }}
{{- end }}
{{- $metrics := .Values.metrics | default dict }}
{{- $pushgateway := $metrics.pushgateway | default dict }}
{{- if $pushgateway.url }}
- name: DATAHUB__METRICS__PUSHGATEWAY
  value: {{ $pushgateway.url | quote }}
{{- else if $pushgateway.existingSecret }}
{{- /* Not optional: a missing Secret or key keeps the pod from starting and says so,
rather than every run silently pushing nothing. */}}
- name: DATAHUB__METRICS__PUSHGATEWAY
  valueFrom:
    secretKeyRef:
      name: {{ $pushgateway.existingSecret | quote }}
      key: {{ $pushgateway.existingSecretKey | default "url" | quote }}
{{- end }}
{{- if ($metrics.textfile | default dict).enabled }}
- name: DATAHUB__METRICS__TEXTFILE
  value: {{ printf "%s/datahubsync.prom" (include "datahubsync.textfileDir" .) | quote }}
{{- end }}
- name: TZ
  value: {{ .Values.timeZone | quote }}
{{- range $name, $value := .Values.env }}
- name: {{ $name | quote }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
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
  name: {{ . | quote }}
  {{- end }}
  labels:
    {{- include "datahubsync.ownLabels" . | nindent 4 }}
    app.kubernetes.io/component: {{ $.component }}
    {{- with merge (deepCopy (.Values.podLabels | default dict)) (deepCopy (.Values.commonLabels | default dict)) }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- /* podAnnotations win over the object's own (commonAnnotations on the test pod);
  neither may set checksum/config or helm.sh/ keys (datahubsync.validateMetadata). */}}
  {{- $checksum := dict "checksum/config" (include (print .Template.BasePath "/configmap.yaml") . | sha256sum) }}
  annotations:
    {{- merge $checksum (deepCopy (.Values.podAnnotations | default dict)) (deepCopy ($.annotations | default dict)) | toYaml | nindent 4 }}
spec:
  restartPolicy: Never
  hostname: {{ include "datahubsync.hostname" . | quote }}
  serviceAccountName: {{ include "datahubsync.serviceAccountName" . | quote }}
  automountServiceAccountToken: false
  # No Service's address reaches the program as environment variables: they are not
  # needed, and a Service named like a DATAHUB_* setting would change that setting.
  enableServiceLinks: false
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . | quote }}
  {{- end }}
  {{- with .Values.runtimeClassName }}
  runtimeClassName: {{ . | quote }}
  {{- end }}
  {{- if not (kindIs "invalid" .Values.terminationGracePeriodSeconds) }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- end }}
  {{- with .Values.hostAliases }}
  hostAliases:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.dnsConfig }}
  dnsConfig:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.initContainers }}
  initContainers:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .Chart.Name }}
      image: {{ include "datahubsync.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- toYaml $.args | nindent 8 }}
      {{- with .Values.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
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
        {{- if (.Values.hub.headersSecret | default dict).name }}
        - name: hub-headers
          mountPath: /run/secrets/datahub-headers
          readOnly: true
        {{- end }}
        - name: data
          mountPath: {{ .Values.persistence.mountPath | quote }}
          {{- with .Values.persistence.subPath }}
          subPath: {{ . | quote }}
          {{- end }}
        # The root filesystem is read-only; the program and Python need a writable /tmp.
        - name: tmp
          mountPath: /tmp
        {{- if ((.Values.metrics | default dict).textfile | default dict).enabled }}
        - name: metrics-textfile
          mountPath: {{ include "datahubsync.textfileDir" . | quote }}
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "datahubsync.fullname" . | quote }}
    {{- /* Group-readable through fsGroup; without one, secret files must be
    world-readable for the non-root user to read them. */}}
    {{- $secretMode := ternary "0440" "0444" (not (empty (($ctx.Values.podSecurityContext | default dict).fsGroup))) }}
    {{- with include "datahubsync.secretName" . }}
    - name: hub-token
      secret:
        secretName: {{ . | quote }}
        defaultMode: {{ $secretMode }}
        items:
          - key: {{ include "datahubsync.secretKey" $ctx | quote }}
            path: token
    {{- end }}
    {{- with (.Values.hub.headersSecret | default dict).name }}
    - name: hub-headers
      secret:
        secretName: {{ . | quote }}
        defaultMode: {{ $secretMode }}
        items:
          {{- range $key, $header := include "datahubsync.headerItems" $ctx | fromYaml }}
          - key: {{ $key | quote }}
            path: {{ $header | quote }}
          {{- end }}
    {{- end }}
    - name: data
      {{- if not .Values.persistence.enabled }}
      emptyDir: {}
      {{- else if .Values.persistence.hostPath }}
      hostPath:
        path: {{ .Values.persistence.hostPath | quote }}
        # Directory, not DirectoryOrCreate: a directory the kubelet creates belongs to root
        # and the non-root program could not write it; failing to start says so plainly.
        type: Directory
      {{- else }}
      persistentVolumeClaim:
        claimName: {{ include "datahubsync.claimName" . | quote }}
      {{- end }}
    - name: tmp
      emptyDir: {}
    {{- $textfile := (.Values.metrics | default dict).textfile | default dict }}
    {{- if $textfile.enabled }}
    - name: metrics-textfile
      hostPath:
        path: {{ $textfile.hostPath | quote }}
        # Directory: node_exporter's directory must already exist (and be writable by the
        # pods' user); the kubelet would create a missing one for root only.
        type: Directory
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
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
  {{- /* --skip-if-locked: a run that finds another sync holding the data volume's lock
  (a `create job --from`, an initial sync re-created by a rollback) has nothing to do
  and exits 0, instead of failing the Job or making it start pod after pod. */}}
  {{- include "datahubsync.podTemplate" (dict "ctx" . "component" $.component "args" (list "sync" "--skip-if-locked")) | nindent 2 }}
{{- end }}
{{- end }}
