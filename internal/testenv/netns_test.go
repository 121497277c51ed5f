package testenv

import (
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

// TestNetnsIsolates: an address added inside a namespace is served there and reachable
// from the test through DialContext, not from the host's namespace; a process started
// there sees the namespace's interfaces.
func TestNetnsIsolates(t *testing.T) {
	n := NewNetns(t)
	const ip = "10.123.0.1"
	if err := n.IP("addr", "add", ip+"/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	l, err := n.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "inside") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	client := &http.Client{Transport: &http.Transport{DialContext: n.DialContext}}
	resp, err := client.Get("http://" + l.Addr().String())
	if err != nil {
		t.Fatalf("GET from inside: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "inside" {
		t.Fatalf("body %q", body)
	}
	if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
		c.Close()
		t.Fatalf("%s is reachable from the host's namespace", l.Addr())
	}
	cmd := exec.Command("ip", "-o", "addr", "show")
	var out strings.Builder
	cmd.Stdout = &out
	if err := n.Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), ip) {
		t.Fatalf("a process started inside does not see %s:\n%s", ip, out.String())
	}
}
