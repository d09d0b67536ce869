{{/*
Helpers of the agritrace chart.

Every per-service template ranges over "agritrace.serviceNames" (the entries of .Values.services
and one province-bridge-<code> per entry of .Values.provinceBridges.provinces) and resolves each
with "agritrace.resolveService", which deep-merges it over .Values.serviceDefaults. Templates then
pass a context dict (root, svc, component) to the naming, label and pod helpers below, where
component is one of server, worker, task, migrate or test.
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "agritrace.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name, the prefix of every resource name. */}}
{{- define "agritrace.fullname" -}}
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

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "agritrace.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Namespace of every resource. */}}
{{- define "agritrace.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Deep-merges the map (index . 1) into the map (index . 0), in place: maps merge key by key,
anything else (scalars, lists) replaces, and a null removes the key. Unlike sprig's merge and
mergeOverwrite, a false, 0 or "" set in the source does override the destination.
*/}}
{{- define "agritrace.deepMerge" -}}
{{- $dst := index . 0 -}}
{{- $src := index . 1 -}}
{{- range $key, $value := $src -}}
{{- if kindIs "invalid" $value -}}
{{- $_ := unset $dst $key -}}
{{- else if and (kindIs "map" $value) (kindIs "map" (get $dst $key)) -}}
{{- $_ := include "agritrace.deepMerge" (list (get $dst $key) $value) -}}
{{- else -}}
{{- $_ := set $dst $key (deepCopy $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Names of the services to render, sorted, as a JSON list (range over it with fromJsonArray): the
entries of services and, when provinceBridges.enabled, province-bridge-<code> for each entry of
provinceBridges.provinces (the bridge's own service name: its schema, province_bridge_<code>).
Fails when a bridge is also an entry of services. Context: root.
*/}}
{{- define "agritrace.serviceNames" -}}
{{- $names := keys .Values.services -}}
{{- if .Values.provinceBridges.enabled -}}
{{- range $code, $_ := .Values.provinceBridges.provinces -}}
{{- $name := printf "province-bridge-%s" $code -}}
{{- if has $name $names -}}
{{- fail (printf "\n\nagritrace: %s is both services.%s and provinceBridges.provinces.%s: keep the province's bridge in provinceBridges only.\n" $name $name $code) -}}
{{- end -}}
{{- $names = append $names $name -}}
{{- end -}}
{{- end -}}
{{- sortAlpha $names | toJson -}}
{{- end -}}

{{/*
Resolves one service: fills the dict .out with serviceDefaults deep-merged with
services.<.name> or, for a province's bridge (province-bridge-<code>), with
provinceBridges.defaults and then provinceBridges.provinces.<code>; plus derived keys: name,
module, otelServiceName, imageRef, imageTag, imagePullPolicy, and province (bridges only).
Prints nothing. Usage:
  {{- $svc := dict }}
  {{- $_ := include "agritrace.resolveService" (dict "root" $ "name" $name "out" $svc) }}
*/}}
{{- define "agritrace.resolveService" -}}
{{- $root := .root -}}
{{- $out := .out -}}
{{- $_ := include "agritrace.deepMerge" (list $out $root.Values.serviceDefaults) -}}
{{- $entry := get $root.Values.services .name -}}
{{- $bridges := $root.Values.provinceBridges -}}
{{- $code := trimPrefix "province-bridge-" .name -}}
{{- if and $bridges.enabled (hasPrefix "province-bridge-" .name) (hasKey $bridges.provinces $code) -}}
{{- $_ := include "agritrace.deepMerge" (list $out $bridges.defaults) -}}
{{- $entry = get $bridges.provinces $code -}}
{{- $_ := set $out "province" $code -}}
{{- end -}}
{{- if kindIs "map" $entry -}}
{{- $_ := include "agritrace.deepMerge" (list $out $entry) -}}
{{- end -}}
{{- $_ := set $out "name" .name -}}
{{- if not $out.module -}}
{{- $_ := set $out "module" (printf "agritrace_%s" (.name | replace "-" "_")) -}}
{{- end -}}
{{- $_ := set $out "otelServiceName" (printf "agritrace-%s" .name) -}}
{{- /* The shared image, with this service's non-empty image fields over it. */ -}}
{{- $image := deepCopy $root.Values.image -}}
{{- range $key, $value := ($out.image | default dict) -}}
{{- if $value -}}
{{- $_ := set $image $key $value -}}
{{- end -}}
{{- end -}}
{{- $registry := ($root.Values.global).imageRegistry | default $image.registry -}}
{{- $repository := $image.repository -}}
{{- if $registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository -}}
{{- end -}}
{{- $tag := toString ($image.tag | default $root.Chart.AppVersion) -}}
{{- $_ := set $out "imageTag" $tag -}}
{{- $_ := set $out "imagePullPolicy" $image.pullPolicy -}}
{{- if $image.digest -}}
{{- $_ := set $out "imageRef" (printf "%s@%s" $repository $image.digest) -}}
{{- else -}}
{{- $_ := set $out "imageRef" (printf "%s:%s" $repository $tag) -}}
{{- end -}}
{{- end -}}

{{/*
Name of a service's resource: <fullname>-<service> for the server and for what all components
of the service share (component "service": ServiceAccount, ConfigMap, NetworkPolicy, ...),
<fullname>-<service>-<component> otherwise. Context: root, svc, component. Fails rather than
truncates, so that two components never collide.
*/}}
{{- define "agritrace.componentName" -}}
{{- $base := printf "%s-%s" (include "agritrace.fullname" .root) .svc.name -}}
{{- $name := $base -}}
{{- if not (has .component (list "server" "service")) -}}
{{- $name = printf "%s-%s" $base .component -}}
{{- end -}}
{{- if gt (len $name) 63 -}}
{{- fail (printf "resource name %q is longer than 63 characters: shorten the release name, fullnameOverride or the service name" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* app.kubernetes.io/name of a service: <chart name>-<service>, e.g. agritrace-registry. */}}
{{- define "agritrace.appName" -}}
{{- $name := printf "%s-%s" (include "agritrace.name" .root) .svc.name -}}
{{- if gt (len $name) 63 -}}
{{- fail (printf "label value %q is longer than 63 characters: shorten nameOverride or the service name" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* Selector labels of one component of one service. Context: root, svc, component. */}}
{{- define "agritrace.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agritrace.appName" . }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
All labels of a resource. Context: root, component, and svc for per-service resources (without
svc, app.kubernetes.io/name is the chart name, for shared resources such as the Secret); a
province's bridge also gets agritrace.io/province (its two-digit code).
*/}}
{{- define "agritrace.labels" -}}
helm.sh/chart: {{ include "agritrace.chart" .root }}
{{- if .svc }}
{{ include "agritrace.selectorLabels" . }}
app.kubernetes.io/version: {{ .svc.imageTag | trunc 63 | trimSuffix "-" | quote }}
{{- with .svc.province }}
agritrace.io/province: {{ . | quote }}
{{- end }}
{{- else }}
app.kubernetes.io/name: {{ include "agritrace.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | toString | trunc 63 | trimSuffix "-" | quote }}
{{- end }}
app.kubernetes.io/part-of: {{ include "agritrace.name" .root }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Name of a service's ServiceAccount. Context: root, svc. */}}
{{- define "agritrace.serviceAccountName" -}}
{{- if .svc.serviceAccount.name -}}
{{- .svc.serviceAccount.name -}}
{{- else if .svc.serviceAccount.create -}}
{{- include "agritrace.componentName" (dict "root" .root "svc" .svc "component" "service") -}}
{{- else -}}
default
{{- end -}}
{{- end -}}

{{/* Whether the chart must create the shared Secret: "true" or empty. Context: root. */}}
{{- define "agritrace.createSecret" -}}
{{- $root := . -}}
{{- $needed := false -}}
{{- if not .Values.secrets.existingSecret -}}
{{- range $name := include "agritrace.serviceNames" $root | fromJsonArray -}}
{{- $svc := dict -}}
{{- $_ := include "agritrace.resolveService" (dict "root" $root "name" $name "out" $svc) -}}
{{- if and $svc.enabled (not $svc.existingSecret) -}}
{{- $needed = true -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $needed -}}true{{- end -}}
{{- end -}}

{{/* Name of the Secret a service reads. Context: root, svc. */}}
{{- define "agritrace.secretName" -}}
{{- .svc.existingSecret | default .root.Values.secrets.existingSecret | default (include "agritrace.fullname" .root) -}}
{{- end -}}

{{/*
Whether a service authenticates its callers against sso: "true" or empty. Every service but the
sso entry itself does, unless ssoClient.enabled is false. Context: root, svc.
*/}}
{{- define "agritrace.ssoClient" -}}
{{- if and (ne .svc.name "sso") .svc.ssoClient.enabled -}}true{{- end -}}
{{- end -}}

{{/*
host:port of sso for the other services (AGRITRACE_SSO_ADDRESS): sso.address, else the sso
Service of this release, <fullname>-sso:<port>. Fails when neither exists. Context: root.
*/}}
{{- define "agritrace.ssoAddress" -}}
{{- if .Values.sso.address -}}
{{- .Values.sso.address -}}
{{- else -}}
{{- $sso := dict -}}
{{- $_ := include "agritrace.resolveService" (dict "root" . "name" "sso" "out" $sso) -}}
{{- if not (and (hasKey .Values.services "sso") $sso.enabled) -}}
{{- fail "\n\nagritrace: services.sso is disabled and sso.address is empty: the other services need an sso to authenticate their callers. Enable services.sso or set sso.address to HOST:PORT of an sso running elsewhere.\n" -}}
{{- end -}}
{{- printf "%s:%d" (include "agritrace.componentName" (dict "root" . "svc" $sso "component" "server")) (int $sso.server.service.port) -}}
{{- end -}}
{{- end -}}

{{/*
Whether a service calls the registry service (gets AGRITRACE_REGISTRY_ADDRESS): "true" or
empty. Every service but the registry and sso entries does, unless registryClient.enabled is
false. Context: root, svc.
*/}}
{{- define "agritrace.registryClient" -}}
{{- if and (not (has .svc.name (list "registry" "sso"))) .svc.registryClient.enabled -}}true{{- end -}}
{{- end -}}

{{/*
host:port of the registry service for its clients (AGRITRACE_REGISTRY_ADDRESS):
registryService.address, else the registry Service of this release, <fullname>-registry:<port>.
Fails when neither exists. Context: root.
*/}}
{{- define "agritrace.registryAddress" -}}
{{- if .Values.registryService.address -}}
{{- .Values.registryService.address -}}
{{- else -}}
{{- $registry := dict -}}
{{- $_ := include "agritrace.resolveService" (dict "root" . "name" "registry" "out" $registry) -}}
{{- if not (and (hasKey .Values.services "registry") $registry.enabled) -}}
{{- fail "\n\nagritrace: services.registry is disabled and registryService.address is empty: the other services (coding, flow, ...) call the registry. Enable services.registry, set registryService.address to HOST:PORT of a registry running elsewhere, or set registryClient.enabled to false on the services that do not call it.\n" -}}
{{- end -}}
{{- printf "%s:%d" (include "agritrace.componentName" (dict "root" . "svc" $registry "component" "server")) (int $registry.server.service.port) -}}
{{- end -}}
{{- end -}}

{{/*
Whether a service calls the coding or the flow service (.target: "coding" or "flow"; gets
AGRITRACE_CODING_ADDRESS or AGRITRACE_FLOW_ADDRESS): "true" or empty. Only the services with
codingClient.enabled (flow, query) or flowClient.enabled (query) do; never the target itself.
Context: root, svc, target.
*/}}
{{- define "agritrace.peerClient" -}}
{{- if and (ne .svc.name .target) (get .svc (printf "%sClient" .target)).enabled -}}true{{- end -}}
{{- end -}}

{{/*
host:port of the coding or the flow service (.target) for its clients: <target>Service.address,
else the <target> Service of this release, <fullname>-<target>:<port>. Fails when neither
exists, naming the client. Context: root, target, client (the calling service's name, for the
message).
*/}}
{{- define "agritrace.peerAddress" -}}
{{- $root := .root -}}
{{- $values := printf "%sService" .target -}}
{{- $address := (get $root.Values $values).address -}}
{{- if $address -}}
{{- $address -}}
{{- else -}}
{{- $peer := dict -}}
{{- $_ := include "agritrace.resolveService" (dict "root" $root "name" .target "out" $peer) -}}
{{- if not (and (hasKey $root.Values.services .target) $peer.enabled) -}}
{{- $who := ternary (printf "services.%s" .client) "a service" (not (empty .client)) -}}
{{- fail (printf "\n\nagritrace: %s calls the %s service (%sClient.enabled), but services.%s is disabled and %s.address is empty. Enable services.%s, or set %s.address to HOST:PORT of the gRPC port of a %s service running elsewhere.\n" $who .target .target .target $values .target $values .target) -}}
{{- end -}}
{{- printf "%s:%d" (include "agritrace.componentName" (dict "root" $root "svc" $peer "component" "server")) (int $peer.server.service.port) -}}
{{- end -}}
{{- end -}}

{{/*
Base URL of the trace-code resolver (AGRITRACE_RESOLVER_BASE_URL) for a service: resolver.baseUrl,
which the coding service (module agritrace_coding, labels) and the flow service (agritrace_flow,
code URLs in EPCIS exports) require. Context: root, svc.
*/}}
{{- define "agritrace.resolverBaseUrl" -}}
{{- if .root.Values.resolver.baseUrl -}}
{{- .root.Values.resolver.baseUrl -}}
{{- else if eq .svc.module "agritrace_coding" -}}
{{- fail (printf "\n\nagritrace: services.%s runs the coding service and resolver.baseUrl is empty: set it to the public base URL printed in every label's QR code, e.g. https://trace.moa.gov.cn (labels once printed cannot be corrected).\n" .svc.name) -}}
{{- else if eq .svc.module "agritrace_flow" -}}
{{- fail (printf "\n\nagritrace: services.%s runs the flow service and resolver.baseUrl is empty: set it to the public base URL of the trace-code resolver, e.g. https://trace.moa.gov.cn; flow's EPCIS exports print code URLs under it, which must match the labels coding prints.\n" .svc.name) -}}
{{- end -}}
{{- end -}}

{{/*
Fails when a service that cannot work without the shared Redis runs with redis.enabled false:
the query service (module agritrace_query), whose worker invalidates the origin-view cache its
servers read and whose replicas count counterfeit scans together. Prints nothing. Context:
root, svc.
*/}}
{{- define "agritrace.requireRedis" -}}
{{- if and (eq .svc.module "agritrace_query") (not .root.Values.redis.enabled) -}}
{{- fail (printf "\n\nagritrace: services.%s runs the query service, which needs Redis (AGRITRACE_REDIS_URL): its worker invalidates the origin views its servers cache there, and its replicas count counterfeit scans there together. Set redis.enabled to true (with redis.url, or the key secrets.keys.redisUrl in the existing Secret).\n" .svc.name) -}}
{{- end -}}
{{- end -}}

{{/*
sso account of a service (AGRITRACE_SERVICE_USERNAME): ssoClient.username, else svc-<service>,
or bridge-<code> for a province's bridge (its platform client, named as `make run` onboards
simulated provinces). Context: root, svc.
*/}}
{{- define "agritrace.ssoUsername" -}}
{{- if .svc.ssoClient.username -}}
{{- .svc.ssoClient.username -}}
{{- else if .svc.province -}}
{{- printf "bridge-%s" .svc.province -}}
{{- else -}}
{{- printf "svc-%s" .svc.name -}}
{{- end -}}
{{- end -}}

{{/*
Secret key of a service's sso account password, e.g. AGRITRACE_SERVICE_PASSWORD_REGISTRY.
Context: root, svc.
*/}}
{{- define "agritrace.ssoPasswordKey" -}}
{{- .svc.ssoClient.passwordKey | default (printf "%s%s" .root.Values.secrets.keys.servicePasswordPrefix (.svc.name | replace "-" "_" | upper)) -}}
{{- end -}}

{{/* Whether the bootstrap-admin hook Job is rendered: "true" or empty. Context: root. */}}
{{- define "agritrace.bootstrapAdmin" -}}
{{- if and .Values.sso.bootstrapAdmin.enabled (hasKey .Values.services "sso") -}}
{{- $sso := dict -}}
{{- $_ := include "agritrace.resolveService" (dict "root" . "name" "sso" "out" $sso) -}}
{{- if $sso.enabled -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Data of the Secret the chart creates, as YAML (base64-encoded values): the shared settings,
the admin password when the bootstrap-admin Job reads this Secret, the sso account password
of every enabled service that authenticates against sso and reads this Secret, and the API key
of every rest bridge that reads this Secret. Fails with the
list of what is missing. Context: root.
*/}}
{{- define "agritrace.secretData" -}}
{{- $root := . -}}
{{- $v := .Values -}}
{{- $missing := list -}}
{{- $keys := list $v.secrets.keys.databaseUrl $v.secrets.keys.amqpUri -}}
{{- if $v.redis.enabled }}{{ $keys = append $keys $v.secrets.keys.redisUrl }}{{ end -}}
{{- $keys = append $keys $v.secrets.keys.piiKey -}}
{{- if not $v.database.url }}{{ $missing = append $missing "database.url" }}{{ end -}}
{{- if not $v.eventBus.amqpUri }}{{ $missing = append $missing "eventBus.amqpUri" }}{{ end -}}
{{- if and $v.redis.enabled (not $v.redis.url) }}{{ $missing = append $missing "redis.url" }}{{ end -}}
{{- if not $v.pii.key }}{{ $missing = append $missing "pii.key" }}{{ end -}}
{{- $extra := dict -}}
{{- range $name := include "agritrace.serviceNames" $root | fromJsonArray -}}
{{- $svc := dict -}}
{{- $_ := include "agritrace.resolveService" (dict "root" $root "name" $name "out" $svc) -}}
{{- $ctx := dict "root" $root "svc" $svc -}}
{{- if and $svc.enabled (not $svc.existingSecret) -}}
{{- if include "agritrace.ssoClient" $ctx -}}
{{- $key := include "agritrace.ssoPasswordKey" $ctx -}}
{{- $keys = append $keys $key -}}
{{- $password := get ($v.sso.servicePasswords | default dict) $name -}}
{{- if $password -}}
{{- $_ := set $extra $key $password -}}
{{- else -}}
{{- $missing = append $missing (printf "sso.servicePasswords.%s" $name) -}}
{{- end -}}
{{- end -}}
{{- with include "agritrace.bridgeApiKeyKey" $ctx -}}
{{- $keys = append $keys . -}}
{{- if $svc.rest.apiKey -}}
{{- $_ := set $extra . $svc.rest.apiKey -}}
{{- else -}}
{{- $missing = append $missing (printf "provinceBridges.provinces.%s.rest.apiKey" $svc.province) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $name "sso") (include "agritrace.bootstrapAdmin" $root) -}}
{{- $keys = append $keys $v.secrets.keys.adminPassword -}}
{{- if $v.sso.adminPassword -}}
{{- $_ := set $extra $v.secrets.keys.adminPassword $v.sso.adminPassword -}}
{{- else -}}
{{- $missing = append $missing "sso.adminPassword" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "\n\nagritrace: no Secret to read. Either set secrets.existingSecret to an existing Secret with the keys %s, or set %s so that the chart creates one.\n" (join ", " $keys) (join ", " $missing)) -}}
{{- end -}}
{{ $v.secrets.keys.databaseUrl }}: {{ $v.database.url | b64enc | quote }}
{{ $v.secrets.keys.amqpUri }}: {{ $v.eventBus.amqpUri | b64enc | quote }}
{{- if $v.redis.enabled }}
{{ $v.secrets.keys.redisUrl }}: {{ $v.redis.url | b64enc | quote }}
{{- end }}
{{ $v.secrets.keys.piiKey }}: {{ $v.pii.key | b64enc | quote }}
{{- range $key, $value := $extra }}
{{ $key }}: {{ $value | b64enc | quote }}
{{- end }}
{{- end -}}

{{/*
Non-secret environment of a service, as a YAML map (the ConfigMap's data; the migration Job
inlines it). Context: root, svc.
*/}}
{{- define "agritrace.configData" -}}
{{- $v := .root.Values -}}
{{- $data := dict
  "AGRITRACE_GRPC_ADDRESS" (printf "0.0.0.0:%d" (int .svc.ports.grpc))
  "AGRITRACE_METRICS_PORT" (toString (int .svc.ports.metrics))
  "AGRITRACE_EVENT_BUS" $v.eventBus.type
  "AGRITRACE_LOG_FORMAT" $v.logging.format
  "AGRITRACE_LOG_LEVEL" $v.logging.level
  "AGRITRACE_MIGRATE_ON_START" "false"
  "OTEL_SERVICE_NAME" .svc.otelServiceName
-}}
{{- if include "agritrace.ssoClient" . -}}
{{- $_ := set $data "AGRITRACE_SSO_ADDRESS" (include "agritrace.ssoAddress" .root) -}}
{{- $_ := set $data "AGRITRACE_SERVICE_USERNAME" (include "agritrace.ssoUsername" .) -}}
{{- end -}}
{{- if include "agritrace.registryClient" . -}}
{{- $_ := set $data "AGRITRACE_REGISTRY_ADDRESS" (include "agritrace.registryAddress" .root) -}}
{{- end -}}
{{- range $target := list "coding" "flow" -}}
{{- if include "agritrace.peerClient" (dict "root" $.root "svc" $.svc "target" $target) -}}
{{- $_ := set $data (printf "AGRITRACE_%s_ADDRESS" (upper $target)) (include "agritrace.peerAddress" (dict "root" $.root "target" $target "client" $.svc.name)) -}}
{{- end -}}
{{- end -}}
{{- with include "agritrace.resolverBaseUrl" . -}}
{{- $_ := set $data "AGRITRACE_RESOLVER_BASE_URL" . -}}
{{- end -}}
{{- include "agritrace.requireRedis" . -}}
{{- range $key, $value := include "agritrace.bridgeConfig" . | fromYaml -}}
{{- $_ := set $data $key $value -}}
{{- end -}}
{{- with $v.otel.endpoint -}}
{{- $_ := set $data "OTEL_EXPORTER_OTLP_ENDPOINT" . -}}
{{- end -}}
{{- range $key, $value := $v.otel.env -}}
{{- $_ := set $data $key (toString $value) -}}
{{- end -}}
{{- range $key, $value := .svc.env -}}
{{- $_ := set $data $key (toString $value) -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}

{{/*
Environment of a container besides the ConfigMap: pod identity for OpenTelemetry, then the
secret references; servers, workers and tasks of services that authenticate against sso also
get their account's password, and the server of a rest bridge its provincial API key. Context: root, svc, component; secretName overrides the Secret.
*/}}
{{- define "agritrace.env" -}}
{{- $v := .root.Values -}}
{{- $secret := .secretName | default (include "agritrace.secretName" .) -}}
{{- $attributes := list "k8s.namespace.name=$(K8S_NAMESPACE_NAME)" "k8s.pod.name=$(K8S_POD_NAME)" (printf "service.version=%s" .svc.imageTag) -}}
{{- range $key, $value := $v.otel.resourceAttributes -}}
{{- $attributes = append $attributes (printf "%s=%v" $key $value) -}}
{{- end -}}
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attributes | quote }}
- name: AGRITRACE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.secrets.keys.databaseUrl }}
- name: AGRITRACE_AMQP_URI
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.secrets.keys.amqpUri }}
{{- if $v.redis.enabled }}
- name: AGRITRACE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.secrets.keys.redisUrl }}
{{- end }}
- name: AGRITRACE_PII_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.secrets.keys.piiKey }}
{{- if and (has .component (list "server" "worker" "task")) (include "agritrace.ssoClient" .) }}
- name: AGRITRACE_SERVICE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "agritrace.ssoPasswordKey" . }}
{{- end }}
{{- if eq .component "server" }}
{{- with include "agritrace.bridgeApiKeyKey" . }}
- name: AGRITRACE_BRIDGE_ADAPTER_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* imagePullSecrets of a pod, from global.imagePullSecrets (names or {name: ...}). */}}
{{- define "agritrace.imagePullSecrets" -}}
{{- with (.Values.global).imagePullSecrets }}
imagePullSecrets:
{{- range . }}
{{- if kindIs "map" . }}
  - name: {{ .name }}
{{- else }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Pod-spec fields shared by every pod of a service (service account, security, scheduling,
volumes). Context: root, svc, component; serviceAccountName overrides the account.
*/}}
{{- define "agritrace.podSpec" -}}
serviceAccountName: {{ .serviceAccountName | default (include "agritrace.serviceAccountName" .) }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- include "agritrace.imagePullSecrets" .root }}
securityContext:
  {{- toYaml .svc.podSecurityContext | nindent 2 }}
{{- with .svc.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .svc.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .svc.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .svc.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ .svc.tmpSizeLimit }}
{{- if include "agritrace.dropFolder" . }}
  - name: drop-folder
    persistentVolumeClaim:
      claimName: {{ include "agritrace.dropFolderClaim" . }}
{{- end }}
{{- end -}}

{{/* Container fields shared by every container of a service. Context: root, svc, component. */}}
{{- define "agritrace.containerCommon" -}}
image: {{ .svc.imageRef }}
imagePullPolicy: {{ .svc.imagePullPolicy }}
securityContext:
  {{- toYaml .svc.securityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- if include "agritrace.dropFolder" . }}
  - name: drop-folder
    mountPath: {{ .svc.dropFolder.mountPath }}
{{- end }}
{{- end -}}

{{/*
topologySpreadConstraints of a component: entries without labelSelector get the component's
selector labels. Context: root, svc, component, constraints.
*/}}
{{- define "agritrace.topologySpread" -}}
{{- $ctx := . -}}
{{- with .constraints -}}
topologySpreadConstraints:
{{- range . }}
  {{- $constraint := deepCopy . }}
  {{- if not (hasKey $constraint "labelSelector") }}
  {{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "agritrace.selectorLabels" $ctx | fromYaml)) }}
  {{- end }}
  - {{ toYaml $constraint | nindent 4 | trim }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
A native gRPC probe. Context: probe (values), port, service (health service name, which the
probe's own "service" overrides).
*/}}
{{- define "agritrace.grpcProbe" -}}
grpc:
  port: {{ int .port }}
  {{- with (hasKey .probe "service" | ternary .probe.service .service) }}
  service: {{ . | quote }}
  {{- end }}
{{- with omit .probe "enabled" "service" }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Number or percentage for a PodDisruptionBudget field. */}}
{{- define "agritrace.intOrString" -}}
{{- if kindIs "string" . -}}{{ . | quote }}{{- else -}}{{ int . }}{{- end -}}
{{- end -}}

{{/*
The settings of a province's bridge (resolved service with .svc.province), as a YAML map of its
AGRITRACE_BRIDGE_* variables (part of configData); nothing for other services. Fails when a
rest bridge has no base URL. Context: root, svc.
*/}}
{{- define "agritrace.bridgeConfig" -}}
{{- if .svc.province -}}
{{- $where := printf "provinceBridges.provinces.%s" .svc.province -}}
{{- $data := dict
  "AGRITRACE_BRIDGE_PROVINCE" .svc.province
  "AGRITRACE_BRIDGE_ADAPTER" .svc.adapter
  "AGRITRACE_BRIDGE_IMPORT_PAGE_SIZE" (toString (int .svc.importPageSize))
-}}
{{- if eq .svc.adapter "rest" -}}
{{- if not .svc.rest.baseUrl -}}
{{- fail (printf "\n\nagritrace: %s uses the rest adapter and %s.rest.baseUrl is empty: set it to the provincial platform's API base URL, e.g. https://trace.sd.example.cn/agritrace/v1.\n" $where $where) -}}
{{- end -}}
{{- $_ := set $data "AGRITRACE_BRIDGE_ADAPTER_BASE_URL" .svc.rest.baseUrl -}}
{{- $_ := set $data "AGRITRACE_BRIDGE_ADAPTER_TIMEOUT_SECONDS" (toString .svc.rest.timeoutSeconds) -}}
{{- $_ := set $data "AGRITRACE_BRIDGE_ADAPTER_CONNECT_TIMEOUT_SECONDS" (toString .svc.rest.connectTimeoutSeconds) -}}
{{- else if eq .svc.adapter "drop-folder" -}}
{{- $_ := set $data "AGRITRACE_BRIDGE_ADAPTER_ROOT" .svc.dropFolder.mountPath -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}
{{- end -}}

{{/*
Secret key of a rest bridge's provincial API key (AGRITRACE_BRIDGE_ADAPTER_API_KEY of its
server): rest.apiKeySecretKey, else AGRITRACE_BRIDGE_API_KEY_<code>; empty for any other
service. Context: root, svc.
*/}}
{{- define "agritrace.bridgeApiKeyKey" -}}
{{- if and .svc.province (eq .svc.adapter "rest") -}}
{{- .svc.rest.apiKeySecretKey | default (printf "AGRITRACE_BRIDGE_API_KEY_%s" .svc.province) -}}
{{- end -}}
{{- end -}}

{{/*
Whether a pod mounts a drop-folder bridge's folder: "true" for the server of a bridge with the
drop-folder adapter (the one process that opens the adapter), else empty. Context: root, svc,
component.
*/}}
{{- define "agritrace.dropFolder" -}}
{{- if and .svc.province (eq (.svc.adapter | default "") "drop-folder") (eq .component "server") -}}true{{- end -}}
{{- end -}}

{{/*
The PersistentVolumeClaim of a drop-folder bridge: dropFolder.existingClaim, else the one the
chart creates, <fullname>-province-bridge-<code>-drop-folder. Context: root, svc.
*/}}
{{- define "agritrace.dropFolderClaim" -}}
{{- .svc.dropFolder.existingClaim | default (include "agritrace.componentName" (dict "root" .root "svc" .svc "component" "drop-folder")) -}}
{{- end -}}

{{/*
Fails unless a province's bridge runs as a singleton: one server pod (no autoscaler), replaced
with the Recreate strategy, so that two bridges of one province never run at once (they would
both page the import, deliver the inbox and push the queue). Prints nothing. Context: root, svc.
*/}}
{{- define "agritrace.requireSingleton" -}}
{{- if .svc.province -}}
{{- $server := .svc.server -}}
{{- if or (ne (int $server.replicas) 1) $server.autoscaling.enabled (ne ($server.strategy).type "Recreate") -}}
{{- fail (printf "\n\nagritrace: provinceBridges.provinces.%s: a province's bridge is a singleton; its server needs replicas 1, autoscaling.enabled false and strategy.type Recreate (two bridges of one province must never run at once).\n" .svc.province) -}}
{{- end -}}
{{- end -}}
{{- end -}}
