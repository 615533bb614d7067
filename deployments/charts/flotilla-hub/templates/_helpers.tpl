{{/* Names and labels. */}}
{{- define "flotilla-hub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flotilla-hub.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "flotilla-hub.headless" -}}
{{- printf "%s-headless" (include "flotilla-hub.fullname" .) }}
{{- end }}

{{- define "flotilla-hub.natsService" -}}
{{- printf "%s-nats" (include "flotilla-hub.fullname" .) }}
{{- end }}

{{- define "flotilla-hub.tlsSecret" -}}
{{- default (printf "%s-tls" (include "flotilla-hub.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{- define "flotilla-hub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flotilla-hub.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "flotilla-hub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flotilla-hub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flotilla-hub.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "flotilla-hub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: hub
app.kubernetes.io/part-of: flotilla
{{- end }}

{{- define "flotilla-hub.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where the pod mounts what the configuration names. */}}
{{- define "flotilla-hub.dataDir" -}}/var/lib/flotilla{{- end }}
{{- define "flotilla-hub.configDir" -}}/etc/flotilla/config{{- end }}
{{- define "flotilla-hub.secretsDir" -}}/etc/flotilla/secrets{{- end }}
{{- define "flotilla-hub.tlsDir" -}}/etc/flotilla/tls{{- end }}
{{- define "flotilla-hub.sharedDir" -}}/etc/flotilla/shared{{- end }}

{{/* The container ports; the Services' ports are values. */}}
{{- define "flotilla-hub.apiPort" -}}8080{{- end }}
{{- define "flotilla-hub.natsPort" -}}4222{{- end }}
{{- define "flotilla-hub.routePort" -}}6222{{- end }}

{{/* The DNS name of replica .ordinal under the headless Service. */}}
{{- define "flotilla-hub.podHost" -}}
{{- printf "%s-%d.%s.%s.svc" (include "flotilla-hub.fullname" .root) (int .ordinal) (include "flotilla-hub.headless" .root) .root.Release.Namespace }}
{{- end }}

{{/* The URL agents dial (nats.advertiseURL or its default). */}}
{{- define "flotilla-hub.natsAdvertiseURL" -}}
{{- if .Values.nats.advertiseURL }}
{{- .Values.nats.advertiseURL }}
{{- else if eq (int .Values.replicas) 1 }}
{{- printf "tls://%s.%s.svc:%d" (include "flotilla-hub.natsService" .) .Release.Namespace (int .Values.nats.service.port) }}
{{- else }}
{{- $urls := list }}
{{- range $i := until (int .Values.replicas) }}
{{- $urls = append $urls (printf "tls://%s:%s" (include "flotilla-hub.podHost" (dict "root" $ "ordinal" $i)) (include "flotilla-hub.natsPort" $)) }}
{{- end }}
{{- join "," $urls }}
{{- end }}
{{- end }}

{{/*
The names on the certificates of replica .ordinal (-1: of every replica,
for one certificate they all share), as a JSON list: the Services', the
pods', the hosts of nats.advertiseURL and tls.hosts.
*/}}
{{- define "flotilla-hub.hosts" -}}
{{- $root := .root }}
{{- $ns := $root.Release.Namespace }}
{{- $hosts := list }}
{{- range $svc := list (include "flotilla-hub.fullname" $root) (include "flotilla-hub.natsService" $root) }}
{{- $hosts = append $hosts $svc }}
{{- $hosts = append $hosts (printf "%s.%s" $svc $ns) }}
{{- $hosts = append $hosts (printf "%s.%s.svc" $svc $ns) }}
{{- end }}
{{- range $i := until (int $root.Values.replicas) }}
{{- if or (lt (int $.ordinal) 0) (eq (int $.ordinal) $i) }}
{{- $pod := include "flotilla-hub.podHost" (dict "root" $root "ordinal" $i) }}
{{- $hosts = append $hosts $pod }}
{{- $hosts = append $hosts (printf "%s-%d.%s" (include "flotilla-hub.fullname" $root) $i (include "flotilla-hub.headless" $root)) }}
{{- end }}
{{- end }}
{{- range $u := splitList "," (include "flotilla-hub.natsAdvertiseURL" $root) }}
{{- $h := (urlParse (trim $u)).hostname }}
{{- if $h }}
{{- $hosts = append $hosts $h }}
{{- end }}
{{- end }}
{{- range $root.Values.tls.hosts }}
{{- $hosts = append $hosts . }}
{{- end }}
{{- $hosts | uniq | toJson }}
{{- end }}

{{/* The keys of secrets.name the configuration names. */}}
{{- define "flotilla-hub.secretKeys" -}}
{{- $keys := list }}
{{- range .Values.api.tokens }}{{ $keys = append $keys .secretKey }}{{ end }}
{{- with .Values.webhook.secretKey }}{{ $keys = append $keys . }}{{ end }}
{{- range .Values.repositories }}
{{- with .auth }}
{{- range $k := list .passwordSecretKey .sshKeySecretKey .sshKnownHostsSecretKey }}{{ if $k }}{{ $keys = append $keys $k }}{{ end }}{{ end }}
{{- end }}
{{- end }}
{{- range (.Values.charts.repositories | default list) }}
{{- range $k := list .passwordSecretKey .caSecretKey }}{{ if $k }}{{ $keys = append $keys $k }}{{ end }}{{ end }}
{{- end }}
{{- $keys | uniq | toJson }}
{{- end }}

{{/* A Service's type and port: .service the values, .port the container port's name. */}}
{{- define "flotilla-hub.serviceSpec" -}}
type: {{ .service.type }}
{{- if and (eq .service.type "LoadBalancer") .service.loadBalancerSourceRanges }}
loadBalancerSourceRanges:
  {{- toYaml .service.loadBalancerSourceRanges | nindent 2 }}
{{- end }}
selector:
  {{- include "flotilla-hub.selectorLabels" .root | nindent 2 }}
ports:
  - name: {{ .port }}
    port: {{ .service.port }}
    targetPort: {{ .port }}
    protocol: TCP
    {{- if and (or (eq .service.type "NodePort") (eq .service.type "LoadBalancer")) .service.nodePort }}
    nodePort: {{ .service.nodePort }}
    {{- end }}
{{- end }}

{{/* What the values allow but the hub would refuse, said at install. */}}
{{- define "flotilla-hub.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.shared.secretName) }}
{{- fail "shared.secretName: 3 replicas share their signing key, NATS operator and CA: make them with `hub init -data-dir DIR` and put them in a Secret (docs/install.md)" }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (ne .Values.tls.source "privateCA") (not .Values.tls.caKey) }}
{{- fail "tls.caKey: with 3 replicas, the NATS routes verify each other with the CA of tls.secretName: name its key" }}
{{- end }}
{{- if and (eq .Values.tls.source "certManager") (not .Values.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.issuerRef.name: name the cert-manager Issuer or ClusterIssuer of the hub's certificate" }}
{{- end }}
{{- end }}

{{/*
The hub's configuration file of replica .ordinal (docs/hub-config.md).
*/}}
{{- define "flotilla-hub.config" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $fullname := include "flotilla-hub.fullname" $root }}
{{- $secrets := include "flotilla-hub.secretsDir" $root }}
{{- $cfg := dict "dataDir" (include "flotilla-hub.dataDir" $root) "listen" (printf ":%s" (include "flotilla-hub.apiPort" $root)) }}
{{- $_ := set $cfg "replica" (dict "name" (printf "%s-%d" $fullname (int .ordinal)) "advertiseURL" (printf "https://%s:%s" (include "flotilla-hub.podHost" .) (include "flotilla-hub.apiPort" $root))) }}
{{- $tls := dict }}
{{- if eq $v.tls.source "privateCA" }}
{{- $_ := set $tls "hosts" (include "flotilla-hub.hosts" . | fromJsonArray) }}
{{- else }}
{{- $dir := include "flotilla-hub.tlsDir" $root }}
{{- $_ := set $tls "certFile" (printf "%s/tls.crt" $dir) }}
{{- $_ := set $tls "keyFile" (printf "%s/tls.key" $dir) }}
{{- with $v.tls.caKey }}{{ $_ := set $tls "caFile" (printf "%s/%s" $dir .) }}{{ end }}
{{- end }}
{{- $_ := set $cfg "tls" $tls }}
{{- $nats := dict "embeddedListen" (printf "0.0.0.0:%s" (include "flotilla-hub.natsPort" $root)) "replicas" (int $v.replicas) "tls" $tls "advertiseURL" (include "flotilla-hub.natsAdvertiseURL" $root) }}
{{- if gt (int $v.replicas) 1 }}
{{- $routes := list }}
{{- range $i := until (int $v.replicas) }}
{{- $routes = append $routes (printf "tls://%s:%s" (include "flotilla-hub.podHost" (dict "root" $root "ordinal" $i)) (include "flotilla-hub.routePort" $root)) }}
{{- end }}
{{- $_ := set $nats "cluster" (dict "listen" (printf "0.0.0.0:%s" (include "flotilla-hub.routePort" $root)) "name" "flotilla" "routes" $routes) }}
{{- end }}
{{- with $v.nats.limits }}{{ $_ := set $nats "limits" . }}{{ end }}
{{- $_ := set $cfg "nats" $nats }}
{{- $repos := list }}
{{- range $v.repositories }}
{{- $r := dict "url" .url }}
{{- with .fetchURL }}{{ $_ := set $r "fetchURL" . }}{{ end }}
{{- with .pollInterval }}{{ $_ := set $r "pollInterval" . }}{{ end }}
{{- with .auth }}
{{- $auth := dict }}
{{- with .username }}{{ $_ := set $auth "username" . }}{{ end }}
{{- with .passwordSecretKey }}{{ $_ := set $auth "passwordFile" (printf "%s/%s" $secrets .) }}{{ end }}
{{- with .sshKeySecretKey }}{{ $_ := set $auth "sshKeyFile" (printf "%s/%s" $secrets .) }}{{ end }}
{{- with .sshKnownHostsSecretKey }}{{ $_ := set $auth "sshKnownHostsFile" (printf "%s/%s" $secrets .) }}{{ end }}
{{- $_ := set $r "auth" $auth }}
{{- end }}
{{- $repos = append $repos $r }}
{{- end }}
{{- $_ := set $cfg "repositories" $repos }}
{{- with $v.charts }}
{{- $charts := dict }}
{{- with .refreshInterval }}{{ $_ := set $charts "refreshInterval" . }}{{ end }}
{{- $chartRepos := list }}
{{- range .repositories }}
{{- $r := omit . "passwordSecretKey" "caSecretKey" }}
{{- with .passwordSecretKey }}{{ $_ := set $r "passwordFile" (printf "%s/%s" $secrets .) }}{{ end }}
{{- with .caSecretKey }}{{ $_ := set $r "caFile" (printf "%s/%s" $secrets .) }}{{ end }}
{{- $chartRepos = append $chartRepos $r }}
{{- end }}
{{- with $chartRepos }}{{ $_ := set $charts "repositories" . }}{{ end }}
{{- $_ := set $cfg "charts" $charts }}
{{- end }}
{{- $_ := set $cfg "roots" ($v.roots | default list) }}
{{- with $v.webhook.secretKey }}
{{- $_ := set $cfg "webhook" (dict "secretFile" (printf "%s/%s" $secrets .)) }}
{{- end }}
{{- $tokens := list }}
{{- range $v.api.tokens }}
{{- $tokens = append $tokens (dict "name" .name "role" .role "tokenFile" (printf "%s/%s" $secrets .secretKey)) }}
{{- end }}
{{- $_ := set $cfg "api" (dict "tokens" $tokens "metricsRequireToken" $v.api.metricsRequireToken) }}
{{- with $v.history }}{{ $_ := set $cfg "history" (int .) }}{{ end }}
{{- with $v.gcInterval }}{{ $_ := set $cfg "gcInterval" . }}{{ end }}
{{- with $v.commitAuthor }}{{ $_ := set $cfg "commitAuthor" . }}{{ end }}
{{- toYaml $cfg }}
{{- end }}
