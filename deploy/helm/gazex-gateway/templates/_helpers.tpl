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
{{- $http := default (dict) (get $config "http") -}}
{{- range $key := list "enabled" "host" "port" "tls" "allow_insecure_remote" -}}
{{- if hasKey $http $key -}}
{{- fail (printf "config.http.%s is set by the chart from http; remove it from config" $key) -}}
{{- end -}}
{{- end -}}
{{- $audit := default (dict) (get $config "audit") -}}
{{- if hasKey $audit "path" -}}
{{- fail "config.audit.path is set by the chart (each pod's own file on the data volume); remove it from config" -}}
{{- end -}}
{{- $_ := set $http "enabled" .Values.http.enabled -}}
{{- $_ := set $http "port" (int .Values.http.port) -}}
{{- if eq (include "gazex.httpExposed" .) "true" -}}
{{- $_ := set $http "host" "0.0.0.0" -}}
{{- else -}}
{{- $_ := set $http "host" "127.0.0.1" -}}
{{- end -}}
{{- if .Values.http.tls.enabled -}}
{{- $_ := set $http "tls" (dict "certificate" "/etc/gazex/http-tls/tls.crt" "private_key" "/etc/gazex/http-tls/tls.key") -}}
{{- end -}}
{{- $_ := set $http "allow_insecure_remote" (and .Values.http.allowInsecureRemote (not .Values.http.tls.enabled)) -}}
{{- $_ := set $config "http" $http -}}
{{- $_ := set $dicom "port" (int .Values.dicom.port) -}}
{{- $_ := set $dicom "tls" $tls -}}
{{- $_ := set $config "dicom" $dicom -}}
{{- $_ := set $storage "data_dir" "/var/lib/gazex" -}}
{{- $_ := set $config "storage" $storage -}}
{{- toYaml $config -}}
{{- end -}}


{{/*
"true" when the HTTP server listens on the pod's address (a Service, Ingress, HTTP probes and
scraping can reach it): HTTPS in the pod, or plain HTTP that the operator allowed for a
TLS-terminating Ingress. Otherwise it listens on the pod's loopback (kubectl port-forward).
*/}}
{{- define "gazex.httpExposed" -}}
{{- and .Values.http.enabled (or .Values.http.tls.enabled .Values.http.allowInsecureRemote) -}}
{{- end -}}

{{- define "gazex.httpScheme" -}}
{{- if .Values.http.tls.enabled -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{/* Values that would expose the console without TLS, or use it where it is not exposed. */}}
{{- define "gazex.checkHttp" -}}
{{- $exposed := eq (include "gazex.httpExposed" .) "true" -}}
{{- if and (has .Values.http.service.type (list "LoadBalancer" "NodePort")) (not .Values.http.tls.enabled) -}}
{{- fail (printf "http.service.type %s would carry plain HTTP beyond the cluster: set http.tls.enabled (or use ClusterIP behind the Ingress)" .Values.http.service.type) -}}
{{- end -}}
{{- if and .Values.http.ingress.enabled (not $exposed) -}}
{{- fail "http.ingress.enabled needs the console on the pod's address: set http.tls.enabled or http.allowInsecureRemote" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not $exposed) -}}
{{- fail "metrics.serviceMonitor.enabled needs the console on the pod's address: set http.tls.enabled or http.allowInsecureRemote" -}}
{{- end -}}
{{- if and .Values.metrics.podAnnotations (not $exposed) -}}
{{- fail "metrics.podAnnotations needs the console on the pod's address: set http.tls.enabled or http.allowInsecureRemote" -}}
{{- end -}}
{{- $http := default (dict) (get .Values.config "http") -}}
{{- if and .Values.metrics.podAnnotations (not (get $http "metrics_public")) -}}
{{- fail "metrics.podAnnotations sends no token: set config.http.metrics_public: true, or use metrics.serviceMonitor with a token" -}}
{{- end -}}
{{- end -}}
