{{/* Names, labels and the Pod template shared by the kray-cluster templates. */}}

{{- define "kray-cluster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The RayCluster's name: at most 54 characters so "<name>-head-svc" is a valid Service name. */}}
{{- define "kray-cluster.fullname" -}}
{{- $name := .Release.Name -}}
{{- if .Values.fullnameOverride -}}
{{- $name = .Values.fullnameOverride -}}
{{- else if .Values.nameOverride -}}
{{- $name = printf "%s-%s" .Release.Name .Values.nameOverride -}}
{{- end -}}
{{- if gt (len $name) 54 -}}
{{- fail (printf "the RayCluster name %q is longer than 54 characters; set fullnameOverride" $name) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- fail (printf "the RayCluster name %q must start with a letter and hold only lowercase letters, digits and '-'; set fullnameOverride" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{- define "kray-cluster.labels" -}}
app.kubernetes.io/name: {{ include "kray-cluster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kray
{{- end -}}

{{/*
A Pod template for the head or a worker group.
Call with (dict "root" $ "group" $group "container" "kray-head").
*/}}
{{- define "kray-cluster.podTemplate" -}}
{{- $root := .root -}}
{{- $g := .group -}}
{{- $image := merge (dict) ($g.image | default dict) $root.Values.image -}}
{{- with $g.labels }}
metadata:
  labels:
    {{- toYaml . | nindent 4 }}
  {{- with $g.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- else }}
{{- with $g.annotations }}
metadata:
  annotations:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end }}
{{- $env := concat ($root.Values.common.containerEnv | default list) ($g.containerEnv | default list) ($g.env | default list) }}
spec:
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.serviceAccountName }}
  serviceAccountName: {{ . }}
  {{- end }}
  {{- with $g.restartPolicy }}
  restartPolicy: {{ . }}
  {{- end }}
  {{- with $g.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $g.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.initContainers }}
  initContainers:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .container }}
      image: "{{ $image.repository }}:{{ $image.tag }}"
      imagePullPolicy: {{ $image.pullPolicy }}
      {{- with $g.command }}
      command:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.args }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $env }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.ports }}
      ports:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if or $g.shmSize $g.volumeMounts }}
      volumeMounts:
        {{- if $g.shmSize }}
        - name: shm
          mountPath: /dev/shm
        {{- end }}
        {{- with $g.volumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
    {{- with $g.sidecarContainers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if or $g.shmSize $g.volumes }}
  volumes:
    {{- if $g.shmSize }}
    - name: shm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $g.shmSize }}
    {{- end }}
    {{- with $g.volumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- with $g.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* rayStartParams as strings, as the CRD stores them (whole numbers stay whole, not 1e+09). */}}
{{- define "kray-cluster.rayStartParams" -}}
{{- $out := dict -}}
{{- range $k, $v := . -}}
{{- if and (kindIs "float64" $v) (eq $v (float64 (int64 $v))) -}}
{{- $_ := set $out $k (toString (int64 $v)) -}}
{{- else -}}
{{- $_ := set $out $k (toString $v) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}


{{/*
Every worker group, in order: `worker` (unless disabled), `additionalWorkerGroups` by name (the key is the
groupName; disabled ones left out), then the `workerGroups` list. Returned as JSON: {"groups": [...]}.
*/}}
{{- define "kray-cluster.workerGroups" -}}
{{- $groups := list -}}
{{- if and .Values.worker (not .Values.worker.disabled) -}}
{{- $groups = append $groups .Values.worker -}}
{{- end -}}
{{- range $name, $g := .Values.additionalWorkerGroups -}}
{{- if not $g.disabled -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- fail (printf "additionalWorkerGroups.%s: the key is the group's name and must be a DNS label (lowercase letters, digits, '-'), e.g. %q" $name (lower $name)) -}}
{{- end -}}
{{- $groups = append $groups (merge (dict "groupName" $name) (omit $g "groupName")) -}}
{{- end -}}
{{- end -}}
{{- range $g := .Values.workerGroups -}}
{{- $groups = append $groups $g -}}
{{- end -}}
{{- toJson (dict "groups" $groups) -}}
{{- end -}}
