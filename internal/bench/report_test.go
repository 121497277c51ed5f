package bench

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCopyTarget(t *testing.T) {
	s := time.Second
	tests := []struct {
		name                string
		c                   CopyResult
		wantTarget, wantVal string
	}{
		{name: "crane met", c: CopyResult{Peer: "crane", Dests: 1, Promoter: 8 * s / 10, PeerTime: s}, wantTarget: "≤ 0.8×", wantVal: met},
		{name: "crane missed", c: CopyResult{Peer: "crane", Dests: 1, Promoter: 9 * s / 10, PeerTime: s}, wantTarget: "≤ 0.8×", wantVal: missed},
		{name: "regctl", c: CopyResult{Peer: "regctl", Dests: 1, Promoter: 7 * s / 10, PeerTime: s}, wantTarget: "≤ 0.7×", wantVal: met},
		{name: "skopeo has no target to one", c: CopyResult{Peer: "skopeo", Dests: 1, Promoter: 2 * s, PeerTime: s}, wantTarget: noGoal, wantVal: noGoal},
		{name: "three destinations", c: CopyResult{Peer: "skopeo", Dests: 3, Promoter: s, PeerTime: 3 * s}, wantTarget: "≤ 0.5×", wantVal: met},
		{name: "three destinations missed", c: CopyResult{Peer: "crane", Dests: 3, Promoter: 2 * s, PeerTime: 3 * s}, wantTarget: "≤ 0.5×", wantVal: missed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target, v := copyTarget(tt.c)
			if target != tt.wantTarget || v != tt.wantVal {
				t.Errorf("copyTarget(%+v) = %q, %q; want %q, %q", tt.c, target, v, tt.wantTarget, tt.wantVal)
			}
		})
	}
}

func TestRotate(t *testing.T) {
	tests := []struct {
		r    int
		want []string
	}{
		{0, []string{"a", "b", "c", "d"}},
		{1, []string{"b", "c", "d", "a"}},
		{3, []string{"d", "a", "b", "c"}},
		{4, []string{"a", "b", "c", "d"}},
		{6, []string{"c", "d", "a", "b"}},
	}
	for _, tt := range tests {
		s := []string{"a", "b", "c", "d"}
		rotate(s, tt.r)
		if diff := cmp.Diff(tt.want, s); diff != "" {
			t.Errorf("rotate by %d (-want +got):\n%s", tt.r, diff)
		}
	}
}

// TestPeersScript checks the parallel script is valid bash and runs every peer's command
// with the same flags as a single copy.
func TestPeersScript(t *testing.T) {
	script := PeersScript()
	if out, err := exec.Command("bash", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s\n%s", err, out, script)
	}
	for _, p := range Peers() {
		for _, a := range p.Args {
			flag := a
			if strings.Contains(a, "{") {
				continue
			}
			if !strings.Contains(script, flag) {
				t.Errorf("script lacks %s's argument %q:\n%s", p.Name, flag, script)
			}
		}
	}
	if got := Peers()[1].argv("127.0.0.1:1/a:v1", "127.0.0.1:2/b:v1"); !cmp.Equal(got, []string{"regctl", "image", "copy",
		"--host", "reg=127.0.0.1:1,tls=disabled", "--host", "reg=127.0.0.1:2,tls=disabled", "127.0.0.1:1/a:v1", "127.0.0.1:2/b:v1"}) {
		t.Errorf("regctl argv %q", got)
	}
}
