{{/* Names ------------------------------------------------------------------------------ */}}

{{- define "routeguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "routeguard.fullname" -}}
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

{{- define "routeguard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "routeguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "routeguard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "routeguard.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "routeguard.fullname" .)) .Values.tls.secretName -}}
{{- end -}}

{{- define "routeguard.leaseName" -}}
{{- default (printf "%s-generator" (include "routeguard.fullname" .)) .Values.generator.leaseName -}}
{{- end -}}

{{- define "routeguard.certificateName" -}}
{{- printf "%s-serving" (include "routeguard.fullname" .) -}}
{{- end -}}

{{- define "routeguard.issuerName" -}}
{{- printf "%s-selfsigned" (include "routeguard.fullname" .) -}}
{{- end -}}

{{- define "routeguard.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The webhook runs in the cluster unless webhook.url points elsewhere. */}}
{{- define "routeguard.inCluster" -}}
{{- if not .Values.webhook.url -}}true{{- end -}}
{{- end -}}

{{/* Labels ----------------------------------------------------------------------------- */}}

{{- define "routeguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "routeguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "routeguard.labels" -}}
helm.sh/chart: {{ include "routeguard.chart" . }}
{{ include "routeguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: routeguard
{{- end -}}

{{/* Webhooks --------------------------------------------------------------------------- */}}

{{/*
The namespaceSelector of both webhooks. The exclusions come first and cannot be switched off:
routeguard must never judge the control plane's namespaces nor its own (it could not start again
after an outage if its own Deployment needed its own answer).
*/}}
{{- define "routeguard.namespaceSelector" -}}
{{- $excluded := list "kube-system" "kube-node-lease" .Release.Namespace -}}
{{- range .Values.webhook.excludeNamespaces -}}
{{- $excluded = append $excluded . -}}
{{- end -}}
{{- with .Values.webhook.namespaceSelector.matchLabels }}
matchLabels:
  {{- toYaml . | nindent 2 }}
{{- end }}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- toYaml (uniq $excluded) | nindent 6 }}
  - key: routeguard.io/ignore
    operator: DoesNotExist
  {{- with .Values.watchNamespaces }}
  - key: kubernetes.io/metadata.name
    operator: In
    values:
      {{- toYaml . | nindent 6 }}
  {{- end }}
  {{- with .Values.webhook.namespaceSelector.matchExpressions }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{- define "routeguard.objectSelector" -}}
{{- with .Values.webhook.objectSelector.matchLabels }}
matchLabels:
  {{- toYaml . | nindent 2 }}
{{- end }}
matchExpressions:
  - key: {{ .Values.webhook.optOutLabel }}
    operator: DoesNotExist
  {{- with .Values.webhook.objectSelector.matchExpressions }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* clientConfig for a path: the in-cluster Service, or webhook.url in development. */}}
{{- define "routeguard.clientConfig" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
{{- $caBundle := index . 2 -}}
{{- if $root.Values.webhook.url }}
url: {{ printf "%s%s" (trimSuffix "/" $root.Values.webhook.url) $path | quote }}
{{- else }}
service:
  name: {{ include "routeguard.fullname" $root }}
  namespace: {{ $root.Release.Namespace }}
  path: {{ $path }}
  port: {{ $root.Values.service.port }}
{{- end }}
{{- with $caBundle }}
caBundle: {{ . }}
{{- end }}
{{- end -}}

{{/*
The CA bundle to render for a webhook configuration (kind, configuration name, webhook name).
- secret mode and webhook.url: tls.caBundle.
- certManager: none (cainjector fills it in from the annotation).
- self: none on first install (routeguard patches it in); on upgrade the bundle already in the
  cluster, found with lookup, so that the rendered manifest never takes it away.
*/}}
{{- define "routeguard.caBundle" -}}
{{- $root := index . 0 -}}
{{- $kind := index . 1 -}}
{{- $webhookName := index . 2 -}}
{{- if or $root.Values.webhook.url (eq $root.Values.tls.mode "secret") -}}
{{- $root.Values.tls.caBundle -}}
{{- else if eq $root.Values.tls.mode "self" -}}
{{- $existing := lookup "admissionregistration.k8s.io/v1" $kind "" (include "routeguard.fullname" $root) -}}
{{- range (dig "webhooks" list $existing) -}}
{{- if and (eq .name $webhookName) (dig "clientConfig" "caBundle" "" .) -}}
{{- dig "clientConfig" "caBundle" "" . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "routeguard.webhookAnnotations" -}}
{{- if and (include "routeguard.inCluster" .) (eq .Values.tls.mode "certManager") }}
cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "routeguard.certificateName" .) }}
{{- end }}
{{- end -}}

{{/* Checks that the schema cannot express. */}}
{{- define "routeguard.validate" -}}
{{- if and (include "routeguard.inCluster" .) (eq .Values.tls.mode "secret") -}}
{{- if not .Values.tls.secretName -}}
{{- fail "tls.mode secret needs tls.secretName: an existing kubernetes.io/tls Secret in the release namespace" -}}
{{- end -}}
{{- if not .Values.tls.caBundle -}}
{{- fail "tls.mode secret needs tls.caBundle: the base64 PEM of the CA that signed the Secret's certificate" -}}
{{- end -}}
{{- end -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (add .Values.shutdownDelaySeconds .Values.drainTimeoutSeconds | int) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be above shutdownDelaySeconds + drainTimeoutSeconds (%v)" .Values.terminationGracePeriodSeconds (add .Values.shutdownDelaySeconds .Values.drainTimeoutSeconds)) -}}
{{- end -}}
{{- if and .Values.webhook.url (not (hasPrefix "https://" .Values.webhook.url)) -}}
{{- fail "webhook.url must start with https:// (the API server only calls webhooks over TLS)" -}}
{{- end -}}
{{- end -}}

{{/* RBAC rules for the namespaced kinds routeguard indexes and generates (see rbac.yaml). */}}
{{- define "routeguard.namespacedRules" -}}
# The index: what the policy reads.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices", "destinationrules", "serviceentries", "gateways"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes", "referencegrants", "gateways"]
  verbs: ["get", "list", "watch"]
{{- if .Values.generator.enabled }}
# The generator: per-version Services and DestinationRule subsets.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create", "update", "patch", "delete"]
- apiGroups: ["networking.istio.io"]
  resources: ["destinationrules"]
  verbs: ["create", "update", "patch", "delete"]
{{- end }}
# Events on the objects it creates, cannot create or finds broken in the audit (kube's recorder
# writes events.k8s.io/v1).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.audit.policyReports.enabled }}
# The audit's PolicyReports (only those named routeguard and labelled managed-by routeguard are touched).
- apiGroups: ["wgpolicyk8s.io"]
  resources: ["policyreports"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
{{- end }}
{{- end -}}
