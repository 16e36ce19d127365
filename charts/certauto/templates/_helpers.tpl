{{/*
The chart's name, truncated to 63 characters (a label value's limit).
*/}}
{{- define "certauto.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified name of the release's objects: the release name when it already
contains the chart's name, else <release>-<chart>; at most 63 characters.
*/}}
{{- define "certauto.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "certauto.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object of the release.
*/}}
{{- define "certauto.labels" -}}
helm.sh/chart: {{ include "certauto.chart" . }}
{{ include "certauto.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: certauto
{{- end }}

{{/*
Labels that select the operator's pods (immutable in a Deployment: never add to them).
*/}}
{{- define "certauto.selectorLabels" -}}
app.kubernetes.io/name: {{ include "certauto.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "certauto.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "certauto.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository@digest when a digest is set, else repository:tag.
*/}}
{{- define "certauto.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Values that cannot be checked by values.schema.json alone.
*/}}
{{- define "certauto.validate" -}}
{{- if and .Values.rbac.namespaced (not .Values.watchNamespaces) }}
{{- fail "rbac.namespaced=true needs watchNamespaces: the namespaces to grant Roles in" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled=true needs metrics.service.enabled=true: it scrapes that Service" }}
{{- end }}
{{- if and .Values.cloudIdentity.azure.workloadIdentity.enabled (not .Values.cloudIdentity.azure.workloadIdentity.clientId) }}
{{- fail "cloudIdentity.azure.workloadIdentity.enabled=true needs cloudIdentity.azure.workloadIdentity.clientId" }}
{{- end }}
{{- end }}

{{/*
The operator's RBAC rules in a namespace where it reconciles CertificateBindings (all of
them in cluster-wide mode). Each rule names the code that needs it; tests/chart proves
that removing any verb breaks the operator in the way its comment says.

`clusterWatches` is false in namespaced mode: the operator watches Secrets and
Certificates cluster-wide (one label-selected watch each), so their list/watch must come
from a ClusterRole there, and granting them again per namespace would be rules nothing
uses.
*/}}
{{- define "certauto.rules.perNamespace" -}}
{{- $clusterWatches := .clusterWatches -}}
{{- $ := .root -}}
# Watch CertificateBindings (operator.py, kube/watch.py: list, then watch).
# Patch: add and remove the finalizer certauto.sanorg.in/cleanup (engine/reconciler.py).
- apiGroups: ["sanorg.in"]
  resources: ["certificatebindings"]
  verbs: ["list", "watch", "patch"]
# Patch status through its subresource, only when it changed (engine/reconciler.py).
- apiGroups: ["sanorg.in"]
  resources: ["certificatebindings/status"]
  verbs: ["patch"]
# get: read a sourceSecretRef Secret once (engine/reconciler.py) or the Secret cert-manager
# issued (engine/managed.py); plugins read credential Secrets (aws-acm, azure-key-vault).
# patch: label a sourceSecretRef Secret certauto.sanorg.in/watched, once.
# create, update, delete: the reflector's copies (plugins/certauto_reflector); delete
# also the issued Secret of a managed binding with deletionPolicy Delete.
{{- if $clusterWatches }}
# list, watch: the label-selected Secret watch (operator.py).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
{{- else }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "update", "patch", "delete"]
{{- end }}
# Events on CertificateBindings; patch bumps the count of a repeat (kube/events.py).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if $.Values.managedMode.enabled }}
# Managed mode (spec.certificate, engine/managed.py): the Certificate CertAuto owns is
# read (get), created, replaced with its resourceVersion (update) and deleted on cleanup.
{{- if $clusterWatches }}
# list, watch: the label-selected Certificate watch, a wake-up call (operator.py).
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["get", "list", "watch", "create", "update", "delete"]
{{- else }}
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["get", "create", "update", "delete"]
{{- end }}
# Why a Certificate is not issued, in the binding's status: an issuerRef naming an Issuer
# that does not exist (IssuerNotFound, IssuerNotReady)...
- apiGroups: ["cert-manager.io"]
  resources: ["issuers"]
  verbs: ["get"]
# ...and the current CertificateRequest's failure (CertificateRequestFailed, ...Denied).
- apiGroups: ["cert-manager.io"]
  resources: ["certificaterequests"]
  verbs: ["list"]
# The Certificate's ownerReference to its binding sets blockOwnerDeletion; clusters with
# the OwnerReferencesPermissionEnforcement admission plugin (OpenShift, hardened
# clusters) allow that only to who may update the owner's finalizers.
- apiGroups: ["sanorg.in"]
  resources: ["certificatebindings/finalizers"]
  verbs: ["update"]
{{- end }}
{{- end }}

{{/*
Cluster-scoped rules the operator needs in every mode.
*/}}
{{- define "certauto.rules.clusterScoped" -}}
# Watch Namespaces, for destinations that select namespaces by label (operator.py).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- if .Values.managedMode.enabled }}
# Managed mode: an issuerRef naming a ClusterIssuer that does not exist (IssuerNotFound).
- apiGroups: ["cert-manager.io"]
  resources: ["clusterissuers"]
  verbs: ["get"]
{{- end }}
{{- end }}
