{{/* Names and labels. */}}

{{- define "promoter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "promoter.fullname" -}}
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

{{- define "promoter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "promoter.labels" -}}
helm.sh/chart: {{ include "promoter.chart" . }}
{{ include "promoter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: promoter
{{- end -}}

{{- define "promoter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "promoter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The promoter image of the daemon and the agents: by digest when image.digest is set. */}}
{{- define "promoter.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "promoter.daemon.serviceAccountName" -}}
{{- if .Values.daemon.serviceAccount.create -}}
{{- default (include "promoter.fullname" .) .Values.daemon.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.daemon.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "promoter.builder.serviceAccountName" -}}
{{- if .Values.builder.serviceAccount.create -}}
{{- default (printf "%s-builder" (include "promoter.fullname" .)) .Values.builder.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.builder.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
promoter.webhookSecrets lists the secrets of the webhooks Secret: per webhook receiver (one
per row of internal/events.Receivers; charts/chart_test.go checks each is wired), the
webhooks value naming its key in the Secret, its key under config.auth, and whether it
receives a registry's notifications; then the status API's token. Each one set is mounted
(deployment.yaml) and referred to as file: in the configuration (promoter.config).
*/}}
{{- define "promoter.webhookSecrets" -}}
- {value: registryTokenKey, auth: registryToken, registry: true}
- {value: githubSecretKey, auth: github.secret}
- {value: gitlabTokenKey, auth: gitlab.token}
- {value: genericTokenKey, auth: generic.token}
- {value: harborTokenKey, auth: harbor.token, registry: true}
- {value: cloudeventsTokenKey, auth: cloudevents.token, registry: true}
- {value: acrTokenKey, auth: acr.token, registry: true}
- {value: garTokenKey, auth: gar.token, registry: true}
- {value: ecrTokenKey, auth: ecr.token, registry: true}
- {value: quayTokenKey, auth: quay.token, registry: true}
- {value: statusTokenKey, auth: statusToken}
{{- end -}}

{{- define "promoter.webhooks.secretName" -}}
{{- default (printf "%s-webhooks" (include "promoter.fullname" .)) .Values.webhooks.existingSecret -}}
{{- end -}}

{{/* Mount points inside the containers; the config file refers to these paths. */}}
{{- define "promoter.paths" -}}
config: /etc/promoter/config.yaml
dataDir: /var/lib/promoter
webhooks: /etc/promoter/secrets/webhooks
signing: /etc/promoter/signing
docker: /etc/promoter/docker
nats: /etc/promoter/nats
trust: /etc/promoter/trust
trustedRoot: /etc/promoter/trust/trusted_root.json
verify: /etc/promoter/verify
kms: /etc/promoter/kms
sigstoreToken: /var/run/sigstore/cosign
identityToken: /var/run/sigstore/cosign/oidc-token
{{- end -}}

{{/*
Keys of signing.existingSecret the daemon mounts: the whole key pair, or with a KMS key or
keyless signing only the public key (the old key requireSignature still accepts).
*/}}
{{- define "promoter.signing.keys" -}}
{{- $s := .Values.signing -}}
{{- if $s.existingSecret -}}
{{- if or $s.keyless.enabled $s.kms.key -}}
{{- list $s.publicKeyKey | compact | toJson -}}
{{- else -}}
{{- list $s.privateKeyKey $s.passwordKey $s.publicKeyKey | compact | uniq | toJson -}}
{{- end -}}
{{- else -}}
{{- list | toJson -}}
{{- end -}}
{{- end -}}

{{/* The timestamp authority of sign.tsaURL: keyless signing takes signing.keyless.tsaURL or signing.tsaURL (validation refuses two different ones). */}}
{{- define "promoter.signing.tsaURL" -}}
{{- $s := .Values.signing -}}
{{- if $s.keyless.enabled -}}
{{- $s.keyless.tsaURL | default $s.tsaURL -}}
{{- else -}}
{{- $s.tsaURL -}}
{{- end -}}
{{- end -}}

{{/* The NATS URL the daemon and the agents connect to. */}}
{{- define "promoter.natsURL" -}}
{{- if .Values.nats.embedded.enabled -}}
{{- printf "nats://%s-nats.%s.svc:4222" (include "promoter.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.nats.url -}}
{{- end -}}
{{- end -}}

{{/*
Cross-field checks the JSON schema cannot express with a useful message. Included by every
template that depends on them, so `helm template` and `helm install` stop with the message.
*/}}
{{- define "promoter.validate" -}}
{{- if and (not .Values.nats.embedded.enabled) (not .Values.nats.url) -}}
{{- fail "nats.url is empty: set it to your NATS server (nats://host:4222) or set nats.embedded.enabled=true; several daemon replicas cannot each run their own embedded server" -}}
{{- end -}}
{{- if and .Values.nats.embedded.enabled (gt (int .Values.config.nats.replicas) 1) -}}
{{- fail (printf "config.nats.replicas is %v but the embedded NATS server is a single node: set it to 1, or use an external NATS cluster" .Values.config.nats.replicas) -}}
{{- end -}}
{{- if and .Values.nats.embedded.enabled .Values.nats.credentials.existingSecret -}}
{{- fail "nats.credentials.existingSecret is set but nats.embedded.enabled is true: the embedded server has no authentication; unset one of them" -}}
{{- end -}}
{{- $registryKeys := list -}}
{{- range include "promoter.webhookSecrets" . | fromYamlArray -}}
{{- if .registry -}}{{- $registryKeys = append $registryKeys (index $.Values.webhooks .value) -}}{{- end -}}
{{- end -}}
{{- $registryKeys = compact $registryKeys -}}
{{- if and (not $registryKeys) (not .Values.config.auth.insecureNoAuth) -}}
{{- fail "webhooks.registryTokenKey is empty and so is every other registry receiver's key (harborTokenKey, cloudeventsTokenKey, acrTokenKey, garTokenKey, ecrTokenKey, quayTokenKey): the daemon refuses to accept registry notifications without a token; set the one your registry uses, or config.auth.insecureNoAuth=true for development" -}}
{{- end -}}
{{- $paths := include "promoter.paths" . | fromYaml -}}
{{- $keyless := .Values.signing.keyless -}}
{{- $kms := .Values.signing.kms -}}
{{- range $i, $p := .Values.config.pipelines -}}
{{- if and $p.sign (not $.Values.signing.existingSecret) (not $kms.key) (not $keyless.enabled) -}}
{{- fail (printf "config.pipelines[%d] (%s) has sign: true but signing.existingSecret and signing.kms.key are empty and signing.keyless.enabled is false: create a Secret with the cosign key pair and set signing.existingSecret, set signing.kms.key to a KMS key, or sign keyless" $i ($p.name | default "?")) -}}
{{- end -}}
{{- $v := $p.verify | default dict -}}
{{- if and $v.trustedRoot (hasPrefix (printf "%s/" $paths.trust) $v.trustedRoot) (not $.Values.trustedRoot.configMap) -}}
{{- fail (printf "config.pipelines[%d] (%s) has verify.trustedRoot %s but trustedRoot.configMap is empty: nothing is mounted there" $i ($p.name | default "?") $v.trustedRoot) -}}
{{- end -}}
{{- range $j, $s := $v.signers -}}
{{- if and $s.key (hasPrefix (printf "%s/" $paths.verify) $s.key) (not $.Values.verify.publicKeys.secret) -}}
{{- fail (printf "config.pipelines[%d] (%s) has verify.signers[%d].key %s but verify.publicKeys.secret is empty: nothing is mounted there" $i ($p.name | default "?") $j $s.key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.signing.existingSecret (not $keyless.enabled) (not $kms.key) (not .Values.signing.privateKeyKey) -}}
{{- fail "signing.privateKeyKey is empty but signing.existingSecret is set: name the Secret key holding the cosign private key" -}}
{{- end -}}
{{- if $kms.key -}}
{{- if not (regexMatch `^(awskms://[^/\s]*/\S+|gcpkms://projects/[^/\s]+/locations/[^/\s]+/keyRings/[^/\s]+/cryptoKeys/[^/\s]+(/(cryptoKeyVersions|versions)/[^/\s]+)?|azurekms://[^/\s]+/[^/\s]+(/[a-z0-9]*)?|hashivault://[\w.-]+)$` $kms.key) -}}
{{- fail (printf "signing.kms.key %s is not a KMS key reference: want awskms://[ENDPOINT]/alias/NAME (or a key ID or ARN), gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K[/versions/V], azurekms://VAULT.vault.azure.net/KEY or hashivault://KEY; a key pair in a Secret is signing.existingSecret" $kms.key) -}}
{{- end -}}
{{- if $keyless.enabled -}}
{{- fail "signing.kms.key is set and signing.keyless.enabled is true: the daemon signs with one of them; unset signing.kms.key to sign keyless, or disable keyless to sign with the KMS key" -}}
{{- end -}}
{{- if and .Values.signing.existingSecret (not .Values.signing.publicKeyKey) -}}
{{- fail "signing.kms.key and signing.existingSecret are set, but signing.publicKeyKey is empty: with a KMS key the Secret only provides the old public key (keys.public, accepted while moving to the KMS key); name its key or unset signing.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- if and $kms.credentialsSecret (not $kms.key) -}}
{{- fail "signing.kms.credentialsSecret is set but signing.kms.key is empty: the credentials are only for a KMS key; set signing.kms.key or unset signing.kms.credentialsSecret" -}}
{{- end -}}
{{- if and $kms.credentialsFileKey (not $kms.credentialsSecret) -}}
{{- fail "signing.kms.credentialsFileKey is set but signing.kms.credentialsSecret is empty: name the Secret holding that key" -}}
{{- end -}}
{{- $tsa := include "promoter.signing.tsaURL" . -}}
{{- $witnesses := list -}}
{{- if .Values.signing.tsaURL -}}{{- $witnesses = append $witnesses "signing.tsaURL" -}}{{- end -}}
{{- if .Values.signing.rekorURL -}}{{- $witnesses = append $witnesses "signing.rekorURL" -}}{{- end -}}
{{- if $witnesses -}}
{{- $what := printf "%s %s set" (join " and " $witnesses) (ternary "are" "is" (gt (len $witnesses) 1)) -}}
{{- if not (or $keyless.enabled $kms.key .Values.signing.existingSecret) -}}
{{- fail (printf "%s but nothing signs: set signing.existingSecret (a cosign key pair), signing.kms.key or signing.keyless.enabled, or unset %s" $what (join " and " $witnesses)) -}}
{{- end -}}
{{- if not .Values.trustedRoot.configMap -}}
{{- fail (printf "%s but trustedRoot.configMap is empty: every signature's timestamp and log entry are checked against a sigstore trusted_root.json listing that TSA and log before it is pushed; create a ConfigMap with it (cosign trusted-root create) and set trustedRoot.configMap" $what) -}}
{{- end -}}
{{- if eq (((.Values.config.sign | default dict).format) | default "bundle") "legacy" -}}
{{- fail (printf "%s but config.sign.format is legacy, which cannot carry timestamps or log entries: use bundle, the default" $what) -}}
{{- end -}}
{{- end -}}
{{- if $keyless.enabled -}}
{{- if and $keyless.tsaURL .Values.signing.tsaURL (ne $keyless.tsaURL .Values.signing.tsaURL) -}}
{{- fail (printf "signing.keyless.tsaURL (%s) and signing.tsaURL (%s) differ: keyless signing is stamped by one timestamp authority; unset one of them" $keyless.tsaURL .Values.signing.tsaURL) -}}
{{- end -}}
{{- if or (not $keyless.fulcioURL) (not $tsa) (not .Values.trustedRoot.configMap) -}}
{{- fail "signing.keyless.enabled is true: keyless signing needs signing.keyless.fulcioURL, signing.keyless.tsaURL (or signing.tsaURL) and trustedRoot.configMap (a ConfigMap with the sigstore trusted_root.json naming that Fulcio and TSA)" -}}
{{- end -}}
{{- if eq (((.Values.config.sign | default dict).format) | default "bundle") "legacy" -}}
{{- fail "signing.keyless.enabled is true but config.sign.format is legacy, which cannot hold keyless signatures: use bundle, the default" -}}
{{- end -}}
{{- if and .Values.signing.existingSecret (not .Values.signing.publicKeyKey) -}}
{{- fail "signing.keyless.enabled is true and signing.existingSecret is set, but signing.publicKeyKey is empty: with keyless signing the Secret only provides the old public key (keys.public); name its key or unset signing.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- $seen := dict -}}
{{- range .Values.builder.groups -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "builder.groups: the name %q is used twice; group names name the agent Deployments" .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- end -}}
{{- end -}}

{{/*
The daemon's config file: .Values.config with the keys the chart owns written over it. Secret
values are never inlined: they are file: references to the mounted Secrets.
*/}}
{{- define "promoter.config" -}}
{{- $paths := include "promoter.paths" . | fromYaml -}}
{{- $c := deepCopy .Values.config -}}
{{- $nats := dict "url" (include "promoter.natsURL" .) -}}
{{- if .Values.nats.credentials.existingSecret -}}
{{- $_ := set $nats "credentials" (printf "%s/%s" $paths.nats .Values.nats.credentials.key) -}}
{{- end -}}
{{- $auth := dict -}}
{{- range $r := include "promoter.webhookSecrets" . | fromYamlArray -}}
{{- with index $.Values.webhooks $r.value -}}
{{- $ref := printf "file:%s/%s" $paths.webhooks . -}}
{{- $at := splitList "." $r.auth -}}
{{- if eq (len $at) 1 -}}{{- $_ := set $auth (first $at) $ref -}}{{- else -}}{{- $_ := set $auth (first $at) (dict (last $at) $ref) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- $owned := dict
  "listen" (printf ":%d" (int .Values.daemon.ports.http))
  "metrics" (printf ":%d" (int .Values.daemon.ports.metrics))
  "status" (printf ":%d" (int .Values.daemon.ports.status))
  "dataDir" $paths.dataDir
  "nats" $nats
  "auth" $auth
  "builder" (dict "namespace" .Values.builder.namespace.name)
-}}
{{- $tsa := include "promoter.signing.tsaURL" . -}}
{{- with .Values.signing -}}
{{- $sign := dict -}}
{{- if .keyless.enabled -}}
{{- $sign = dict "fulcioURL" .keyless.fulcioURL "identityToken" $paths.identityToken "tsaURL" $tsa "trustedRoot" $paths.trustedRoot -}}
{{- else if or $tsa .rekorURL -}}
{{- $sign = dict "trustedRoot" $paths.trustedRoot -}}
{{- with $tsa -}}{{- $_ := set $sign "tsaURL" . -}}{{- end -}}
{{- end -}}
{{- with .rekorURL -}}{{- $_ := set $sign "rekorURL" . -}}{{- end -}}
{{- with $sign -}}{{- $_ := set $owned "sign" . -}}{{- end -}}
{{- if .keyless.enabled -}}
{{- /* Keyless excludes keys.cosign: only the old public key, if any, stays accepted. */ -}}
{{- if and .existingSecret .publicKeyKey -}}
{{- $_ := set $owned "keys" (dict "public" (printf "%s/%s" $paths.signing .publicKeyKey)) -}}
{{- end -}}
{{- else if .kms.key -}}
{{- /* The private key stays in the KMS. keys.public, when set, replaces the signing key's
own public half, so it lists the old key and the KMS key. */ -}}
{{- $keys := dict "cosign" .kms.key -}}
{{- if and .existingSecret .publicKeyKey -}}
{{- $_ := set $keys "public" (list (printf "%s/%s" $paths.signing .publicKeyKey) .kms.key) -}}
{{- end -}}
{{- $_ := set $owned "keys" $keys -}}
{{- else if .existingSecret -}}
{{- $keys := dict "cosign" (printf "%s/%s" $paths.signing .privateKeyKey) -}}
{{- if .passwordKey -}}{{- $_ := set $keys "password" (printf "file:%s/%s" $paths.signing .passwordKey) -}}{{- end -}}
{{- if .publicKeyKey -}}{{- $_ := set $keys "public" (printf "%s/%s" $paths.signing .publicKeyKey) -}}{{- end -}}
{{- $_ := set $owned "keys" $keys -}}
{{- end -}}
{{- end -}}
{{- mergeOverwrite $c $owned | toYaml -}}
{{- end -}}

{{/*
The builder agents' config file: only what an agent uses (bus, Job settings, registries, logs).
It carries no webhook or signing references, so an agent never needs those Secrets.
*/}}
{{- define "promoter.builderConfig" -}}
{{- $paths := include "promoter.paths" . | fromYaml -}}
{{- $nats := dict "url" (include "promoter.natsURL" .) "replicas" .Values.config.nats.replicas -}}
{{- if .Values.nats.credentials.existingSecret -}}
{{- $_ := set $nats "credentials" (printf "%s/%s" $paths.nats .Values.nats.credentials.key) -}}
{{- end -}}
{{- $builder := deepCopy .Values.config.builder -}}
{{- $_ := set $builder "namespace" .Values.builder.namespace.name -}}
{{- $c := dict
  "metrics" (printf ":%d" (int .Values.builder.metricsPort))
  "logLevel" .Values.config.logLevel
  "logFormat" .Values.config.logFormat
  "nats" $nats
  "server" .Values.config.server
  "builder" $builder
  "registries" .Values.config.registries
-}}
{{- toYaml $c -}}
{{- end -}}

{{/* Pod and container security contexts meeting Pod Security "restricted". */}}
{{- define "promoter.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "promoter.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Volumes and mounts shared by the daemon and the agents: registry and NATS credentials. */}}
{{- define "promoter.credentialVolumes" -}}
{{- if .Values.registryCredentials.existingSecret }}
- name: docker-config
  secret:
    secretName: {{ .Values.registryCredentials.existingSecret }}
    defaultMode: 0440
    items:
      - key: .dockerconfigjson
        path: config.json
{{- end }}
{{- if .Values.nats.credentials.existingSecret }}
- name: nats-credentials
  secret:
    secretName: {{ .Values.nats.credentials.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.nats.credentials.key }}
        path: {{ .Values.nats.credentials.key }}
{{- end }}
{{- end -}}

{{- define "promoter.credentialMounts" -}}
{{- $paths := include "promoter.paths" . | fromYaml -}}
{{- if .Values.registryCredentials.existingSecret }}
- name: docker-config
  mountPath: {{ $paths.docker }}
  readOnly: true
{{- end }}
{{- if .Values.nats.credentials.existingSecret }}
- name: nats-credentials
  mountPath: {{ $paths.nats }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "promoter.credentialEnv" -}}
{{- $paths := include "promoter.paths" . | fromYaml -}}
{{- if .Values.registryCredentials.existingSecret }}
# go-containerregistry's default keychain reads $DOCKER_CONFIG/config.json.
- name: DOCKER_CONFIG
  value: {{ $paths.docker }}
{{- end }}
{{- end -}}
