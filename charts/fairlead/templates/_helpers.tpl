{{- define "fairlead.name" -}}{{ .Chart.Name }}{{- end -}}

{{- define "fairlead.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "fairlead.labels" -}}
app.kubernetes.io/name: {{ include "fairlead.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fairlead.selector" -}}
app.kubernetes.io/name: {{ include "fairlead.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fairlead.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The rules controller-gen derives from the code's RBAC markers (make generate). */}}
{{- define "fairlead.rules" -}}
{{- $doc := .root.Files.Get (printf "files/rbac/%s/role.yaml" .component) | fromYaml -}}
{{- toYaml (default list $doc.rules) -}}
{{- end -}}

{{/* The Secret holding the speakers' member list key. */}}
{{- define "fairlead.memberlistSecret" -}}
{{- .Values.speaker.memberlistEncryption.existingSecret | default (printf "%s-memberlist" (include "fairlead.fullname" .)) -}}
{{- end -}}
