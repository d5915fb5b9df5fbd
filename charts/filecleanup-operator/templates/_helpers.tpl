{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "filecleanup.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless that would say the chart's name twice: a release whose name
contains the chart's name ("filecleanup-operator", "prod-filecleanup-operator") or is its first words
("filecleanup") goes by the release name alone. */}}
{{- define "filecleanup.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if or (contains $name .Release.Name) (hasPrefix (printf "%s-" .Release.Name) $name) }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "filecleanup.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "filecleanup.selectorLabels" -}}
app.kubernetes.io/name: {{ include "filecleanup.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "filecleanup.labels" -}}
helm.sh/chart: {{ include "filecleanup.chart" . }}
{{ include "filecleanup.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: filecleanup
{{- end }}

{{/* The `helm test` resources: never matched by the operator's selector (Service, PDB, Deployment). */}}
{{- define "filecleanup.testLabels" -}}
helm.sh/chart: {{ include "filecleanup.chart" . }}
app.kubernetes.io/name: {{ include "filecleanup.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: test
app.kubernetes.io/part-of: filecleanup
{{- end }}

{{- define "filecleanup.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "filecleanup.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is given (it pins the exact image). */}}
{{- define "filecleanup.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The namespaces a namespaced install acts in; it must name at least one. */}}
{{- define "filecleanup.watchNamespaces" -}}
{{- if eq .Values.scope "namespaced" }}
{{- if not .Values.watchNamespaces }}
{{- fail "scope: namespaced needs watchNamespaces to list at least one namespace" }}
{{- end }}
{{- end }}
{{- toJson .Values.watchNamespaces }}
{{- end }}

{{/* What the operator may do to FileCleanups: the same in a ClusterRole or a Role. */}}
{{- define "filecleanup.rules" -}}
# Watch the objects, record Kopf's diff-base annotation and the retention labels, read a Failed one's
# keys before its retention ends, delete the finished ones past it.
- apiGroups: ["filecleanup.dev"]
  resources: ["filecleanups"]
  verbs: ["get", "list", "watch", "patch", "delete"]
# Progress, counts and conditions go through the status subresource.
- apiGroups: ["filecleanup.dev"]
  resources: ["filecleanups/status"]
  verbs: ["patch"]
# Completed, RetryScheduled, RetriesExhausted, ... events.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Expired, posted by the sweeper before a Failed object goes.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Leader election: the operator's own Lease, in the release's namespace. */}}
{{- define "filecleanup.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ include "filecleanup.fullname" . | quote }}]
  verbs: ["get", "update"]
# The first replica creates it (a create cannot be limited to one name).
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
{{- end }}

{{/* Who else manages the CRD, if it exists and this release does not own it: "release NAME in
namespace NAMESPACE", or "something other than Helm". Helm refuses to install a resource that another
release owns, so a second installation in the cluster uses the CRD as it is instead of rendering it;
the owner's upgrades keep it current. Empty where there is no cluster to look at (helm template, lint). */}}
{{- define "filecleanup.crdOwner" -}}
{{- $crd := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" "filecleanups.filecleanup.dev" }}
{{- if $crd }}
{{- $annotations := $crd.metadata.annotations | default dict }}
{{- $release := index $annotations "meta.helm.sh/release-name" | default "" }}
{{- $namespace := index $annotations "meta.helm.sh/release-namespace" | default "" }}
{{- if not $release }}
{{- print "something other than Helm" }}
{{- else if or (ne $release .Release.Name) (ne $namespace .Release.Namespace) }}
{{- printf "release %s in namespace %s" $release $namespace }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secret that holds the report key: the user's, or the one the chart makes. */}}
{{- define "filecleanup.reportKeySecret" -}}
{{- .Values.reportKey.existingSecret | default (printf "%s-report-key" (include "filecleanup.fullname" .)) }}
{{- end }}

{{- define "filecleanup.receiptKeySecret" -}}
{{- .Values.receiptKey.existingSecret | default (printf "%s-receipt-key" (include "filecleanup.fullname" .)) }}
{{- end }}
