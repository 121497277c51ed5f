package config

import "testing"

// TestKeylessSigning checks sign.*'s keyless keys: all or none, not with keys.cosign,
// bundles only; with them a signing pipeline and requireSignature need no key.
func TestKeylessSigning(t *testing.T) {
	const pipeline = `pipelines:
  - name: web
    platforms: [linux/amd64]
    staging: reg.example/acme/web
    sign: true
    verify: {acceptUnverified: true}
    promote: [{to: prod.example/acme/web, requireSignature: true}]
`
	const keyless = "sign: {fulcioURL: https://fulcio.example, identityToken: /var/run/sigstore/token, tsaURL: https://tsa.example, trustedRoot: /etc/promoter/trusted_root.json"
	tests := []struct {
		name    string
		yaml    string
		wantErr map[string]string
	}{
		{name: "keyless", yaml: keyless + "}\n"},
		{name: "keyless with a key", yaml: keyless + "}\nkeys: {cosign: /keys/cosign.key}\n",
			wantErr: map[string]string{"keys.cosign": "is set and so is keyless signing (sign.fulcioURL, sign.identityToken, sign.tsaURL and sign.trustedRoot): sign with one, remove the other"}},
		{name: "keyless in the legacy format", yaml: keyless + ", format: legacy}\n",
			wantErr: map[string]string{"sign.format": "legacy cannot hold keyless signatures"}},
		{name: "keyless without a TSA or trusted root", yaml: "sign: {fulcioURL: https://fulcio.example, identityToken: /token}\n",
			wantErr: map[string]string{
				"sign.tsaURL":      "must be set: keyless signing needs sign.fulcioURL, sign.identityToken, sign.tsaURL and sign.trustedRoot",
				"sign.trustedRoot": "must be set: keyless signing needs",
			}},
		{name: "URLs that are not", yaml: "sign: {fulcioURL: fulcio.example, identityToken: /token, tsaURL: 'tsa:3000', trustedRoot: /tr.json}\n",
			wantErr: map[string]string{"sign.fulcioURL": "is not an http(s) URL", "sign.tsaURL": "timestamp authority URL"}},
		{name: "keyless with a log", yaml: keyless + ", rekorURL: https://log2025-1.rekor.sigstore.dev}\n"},
		{name: "a key with a TSA and a log", yaml: "keys: {cosign: /keys/cosign.key}\nsign: {tsaURL: https://tsa.example, rekorURL: https://rekor.example, trustedRoot: /tr.json}\n"},
		{name: "a key with a TSA but no trusted root", yaml: "keys: {cosign: awskms:///alias/promoter}\nsign: {tsaURL: https://tsa.example}\n",
			wantErr: map[string]string{"sign.trustedRoot": "must be set: sign.tsaURL and sign.rekorURL are checked against a sigstore trusted_root.json"}},
		{name: "a key with a log in the legacy format", yaml: "keys: {cosign: /keys/cosign.key}\nsign: {rekorURL: 'rekor:3000', trustedRoot: /tr.json, format: legacy}\n",
			wantErr: map[string]string{"sign.format": "legacy cannot carry timestamps or log entries", "sign.rekorURL": "is not an http(s) URL"}},
		{name: "identities for requireSignature", yaml: keyless + "}\nkeys: {identities: [{issuer: https://kube.example, subject: 'https://kubernetes.io/namespaces/ci/serviceaccounts/promoter'}]}\n"},
		{name: "identities without a subject or a trusted root", yaml: "keys: {cosign: /k, identities: [{issuer: https://kube.example}, {subject: x}]}\n",
			wantErr: map[string]string{
				"keys.identities[0]":        "a keyless signer needs subject",
				"keys.identities[1].issuer": "must be set for a keyless signer",
				"sign.trustedRoot":          "must be set: keys.identities are checked against",
			}},
		{name: "neither key nor keyless", yaml: "",
			wantErr: map[string]string{
				"keys.cosign": "must be set: a pipeline has sign: true (or sign keyless: sign.fulcioURL,",
				"keys.public": "must be set: a destination has requireSignature: true",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadYAML(t, "auth: {insecureNoAuth: true}\n"+tt.yaml+pipeline)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantProblems(t, err, tt.wantErr)
		})
	}
}
