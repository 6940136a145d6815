{{/* Chart name, overridable. */}}
{{- define "ipo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name, used as the prefix of every namespaced resource. */}}
{{- define "ipo.fullname" -}}
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

{{/*
Name of cluster-scoped resources (ClusterRoles, bindings, admission policy): prefixed with
the release namespace so that two releases of the same name in different namespaces
(one per team, in namespaced mode) do not collide.
*/}}
{{- define "ipo.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "ipo.fullname" .) | trunc 253 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "ipo.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ipo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the operator pods; never change them across upgrades. */}}
{{- define "ipo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ipo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of one operator instance's resources (Deployment, metrics Service, PodDisruptionBudget),
from (dict "root" $ "shard" name): the fullname, suffixed with the shard for a shard.
*/}}
{{- define "ipo.instanceName" -}}
{{- if .shard }}
{{- printf "%s-%s" (include "ipo.fullname" .root) .shard | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "ipo.fullname" .root }}
{{- end }}
{{- end }}

{{/*
Labels that select one instance's pods, from (dict "root" $ "shard" name). The main
instance keeps ipo.selectorLabels; a shard's pods have their own name label (so the main
selector does not match them) and the shard label.
*/}}
{{- define "ipo.instanceSelectorLabels" -}}
{{- if .shard }}
app.kubernetes.io/name: {{ printf "%s-shard" (include "ipo.name" .root) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
ecs.mirror.io/shard: {{ .shard | quote }}
{{- else }}
{{- include "ipo.selectorLabels" .root }}
{{- end }}
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "ipo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ipo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The user name the API server gives the operator's ServiceAccount. */}}
{{- define "ipo.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "ipo.serviceAccountName" .) }}
{{- end }}

{{/* Name of the leader-election Lease. */}}
{{- define "ipo.leaseName" -}}
{{- default (printf "%s-leader" (include "ipo.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{/* Container image reference: digest wins over tag; tag defaults to appVersion. */}}
{{- define "ipo.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* API group of the custom resources. */}}
{{- define "ipo.group" -}}ecs.mirror.io{{- end }}

{{/* Where RRSA's projected token is mounted (the path ACK's pod-identity webhook uses). */}}
{{- define "ipo.rrsaTokenDir" -}}/var/run/secrets/ack.alibabacloud.com/rrsa-tokens{{- end }}

{{/*
Checks of combinations of values that would deploy something broken; rendered by the
Deployment so that `helm install` fails early with a clear message.
*/}}
{{- define "ipo.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: without a Lease every replica would write" }}
{{- end }}
{{- $shards := .Values.sharding.shards | default list }}
{{- range $shards }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" (toString .)) }}
{{- fail (printf "sharding.shards: %q is not a shard name (1-63 lowercase letters, digits and '-', starting and ending with a letter or digit)" (toString .)) }}
{{- end }}
{{- if gt (len (printf "%s-%s-metrics" (include "ipo.fullname" $) (toString .))) 63 }}
{{- fail (printf "sharding.shards: %q makes the name %s-%s-metrics longer than 63 characters; use a shorter shard name or fullnameOverride" (toString .) (include "ipo.fullname" $) (toString .)) }}
{{- end }}
{{- if eq (toString .) "main" }}
{{- fail "sharding.shards: \"main\" names the main instance; choose another name" }}
{{- end }}
{{- end }}
{{- if ne (len $shards) (len (uniq $shards)) }}
{{- fail "sharding.shards: each shard name may appear once" }}
{{- end }}
{{- if not (has .Values.logging.format (list "json" "text")) }}
{{- fail (printf "logging.format must be \"json\" or \"text\", not %q" .Values.logging.format) }}
{{- end }}
{{- if .Values.ambientCredentials.rrsa.enabled }}
{{- if not .Values.ambientCredentials.rrsa.roleArn }}
{{- fail "ambientCredentials.rrsa.roleArn is required when ambientCredentials.rrsa.enabled is true" }}
{{- end }}
{{- if not .Values.ambientCredentials.rrsa.oidcProviderArn }}
{{- fail "ambientCredentials.rrsa.oidcProviderArn is required when ambientCredentials.rrsa.enabled is true" }}
{{- end }}
{{- if lt (int .Values.ambientCredentials.rrsa.tokenExpirationSeconds) 600 }}
{{- fail "ambientCredentials.rrsa.tokenExpirationSeconds must be at least 600 (a Kubernetes limit)" }}
{{- end }}
{{- if and .Values.ambientCredentials.rrsa.vpcEndpoint (not .Values.ambientCredentials.rrsa.stsRegion) }}
{{- fail "ambientCredentials.rrsa.vpcEndpoint needs ambientCredentials.rrsa.stsRegion" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Rules the operator needs in every namespace it watches (see rbac.yaml). */}}
{{- define "ipo.rules.watched" -}}
- apiGroups: ["{{ include "ipo.group" . }}"]
  resources: ["imagepipelinequeries"]
  verbs: ["list", "watch"]
- apiGroups: ["{{ include "ipo.group" . }}"]
  resources: ["imagepipelinequeries/status"]
  verbs: ["patch"]
- apiGroups: ["{{ include "ipo.group" . }}"]
  resources: ["imagepipelines"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
