package faultproxy_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/faultproxy"
)

// TestResetMidBody: a reset upload reaches the server cut short and the client sees its
// connection reset; a reset download gives the client part of the body, then a reset; Set
// ends the faults.
func TestResetMidBody(t *testing.T) {
	const size = 1 << 20
	received := make(chan int64, 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			n, _ := io.Copy(io.Discard, r.Body)
			received <- n
			w.WriteHeader(http.StatusCreated)
			return
		}
		w.Write(bytes.Repeat([]byte("x"), size))
	}))
	t.Cleanup(srv.Close)
	p := faultproxy.Start(t, srv.URL, faultproxy.Config{Resets: 1})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	req, _ := http.NewRequest(http.MethodPut, p.URL+"/upload", bytes.NewReader(make([]byte, size)))
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("reset upload: got %s, want a connection error", resp.Status)
	}
	select {
	case n := <-received:
		if n == 0 || n > size/2 {
			t.Errorf("server received %d bytes of the reset upload, want some, at most %d", n, size/2)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reset upload never reached the server")
	}

	resp, err := client.Get(p.URL + "/download")
	if err != nil {
		t.Fatalf("reset download: headers should arrive: %v", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// The reset discards what the proxy's socket had not sent yet: up to half arrives.
	if err == nil || n == 0 || n > size/2 {
		t.Errorf("reset download: read %d bytes, err %v; want some, at most %d, and an error", n, err, size/2)
	}

	p.Set(faultproxy.Config{})
	req, _ = http.NewRequest(http.MethodPut, p.URL+"/upload", bytes.NewReader(make([]byte, size)))
	resp, err = client.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("after Set(Config{}): %v %v", resp, err)
	}
	resp.Body.Close()
	if s := p.Stats.Resets.Load(); s != 2 {
		t.Errorf("Stats.Resets = %d, want 2", s)
	}
	var faults []string
	for _, r := range p.Requests() {
		faults = append(faults, r.Fault)
	}
	if want := []string{faultproxy.FaultReset, faultproxy.FaultReset, ""}; !slices.Equal(faults, want) {
		t.Errorf("recorded faults %q, want %q", faults, want)
	}
}
