package sources

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
)

// TestHostKeyAlgorithms: a poll asks a server for the host key types known for it, as ssh
// does, so that a server with several host keys (GitHub has three) shows the one known;
// for a host with none known, x/crypto's defaults (nil).
func TestHostKeyAlgorithms(t *testing.T) {
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := ssh.NewPublicKey(edPub)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ssh.NewPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	user := writeFile(t, dir, "known_hosts", knownhosts.Line([]string{"127.0.0.1:2222"}, ed)+"\n")
	global := writeFile(t, dir, "ssh_known_hosts", knownhosts.Line([]string{"git.example"}, ec)+"\n")
	s := &sshSetup{sshSettings: sshSettings{
		userKnownHosts: []string{user, filepath.Join(dir, "missing")}, globalKnownHosts: []string{global}, strict: strictYes,
	}}
	tests := []struct {
		addr string
		want []string
	}{
		{addr: "127.0.0.1:2222", want: []string{ssh.KeyAlgoED25519}},
		{addr: "git.example:22", want: []string{ssh.KeyAlgoECDSA256}},
		{addr: "127.0.0.1:22", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			_, got, err := s.hostKeys(tt.addr, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("host key algorithms (-want +got):\n%s", diff)
			}
		})
	}
}
