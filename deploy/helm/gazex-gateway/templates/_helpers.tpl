{{/* Names and labels. */}}
{{- define "gazex.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gazex.fullname" -}}
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

{{- define "gazex.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gazex.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gazex.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "gazex.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: dicom-gateway
{{- end -}}

{{- define "gazex.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gazex.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "gazex.image" -}}
{{- $variant := .Values.image.variant -}}
{{- if not (has $variant (list "cpu" "gpu")) -}}
{{- fail (printf "image.variant is %q: use cpu or gpu" $variant) -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-%s" .Chart.AppVersion $variant) .Values.image.tag) -}}
{{- end -}}

{{- define "gazex.claimName" -}}
{{- default (printf "%s-data" (include "gazex.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}

{{/* The database URL, from the operator's Secret: the pods and the migration Job use it. */}}
{{- define "gazex.databaseEnv" -}}
{{- if not .Values.database.existingSecret -}}
{{- fail "database.existingSecret must name a Secret holding the PostgreSQL URL (see values.yaml)" -}}
{{- end -}}
- name: GAZEX_DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.key }}
{{- end -}}

{{/*
gazex.yaml: the operator's `config` with what the chart owns laid over it (data directory,
port, TLS file paths). The chart refuses values that would fight it.
*/}}
{{- define "gazex.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $storage := default (dict) (get $config "storage") -}}
{{- range $key := list "data_dir" "spool_dir" "outbox_dir" "node_id" -}}
{{- if hasKey $storage $key -}}
{{- fail (printf "config.storage.%s is set by the chart; remove it from your values" $key) -}}
{{- end -}}
{{- end -}}
{{- if hasKey $config "database" -}}
{{- fail "config.database is set by the chart from database.existingSecret; remove it from your values" -}}
{{- end -}}
{{- $dicom := default (dict) (get $config "dicom") -}}
{{- if or (hasKey $dicom "port") (hasKey $dicom "tls") -}}
{{- fail "config.dicom.port and config.dicom.tls are set by the chart from dicom.port and tls; remove them from config" -}}
{{- end -}}
{{- $tls := dict "enabled" false -}}
{{- if .Values.tls.enabled -}}
{{- $tls = dict "enabled" true "certificate" "/etc/gazex/tls/tls.crt" "private_key" "/etc/gazex/tls/tls.key" "minimum_version" (toString .Values.tls.minimumVersion) -}}
{{- if .Values.tls.requireClientCertificate -}}
{{- $_ := set $tls "require_client_certificate" true -}}
{{- $_ := set $tls "ca_certificates" "/etc/gazex/tls/ca.crt" -}}
{{- end -}}
{{- end -}}
{{- $_ := set $dicom "port" (int .Values.dicom.port) -}}
{{- $_ := set $dicom "tls" $tls -}}
{{- $_ := set $config "dicom" $dicom -}}
{{- $_ := set $storage "data_dir" "/var/lib/gazex" -}}
{{- $_ := set $config "storage" $storage -}}
{{- toYaml $config -}}
{{- end -}}
