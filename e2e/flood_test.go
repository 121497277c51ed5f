package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestReconnectFloodSparesHonestSenders reproduces the second load finding of issue 24:
// `promoter serve` runs under an open-file limit of 256 while 400 clients from two other
// addresses (127.0.0.2 and 127.0.0.3) send request headers and then a body at one byte
// per second, and reconnect at once, without a pause, whenever the server drops or
// refuses them: thousands of connections a second. Meanwhile an honest registry on
// 127.0.0.1 sends notifications, each on a new connection, and a probe asks /readyz the
// way the kubelet does (3 s timeout). Every honest notification must get a 2xx and every
// probe a 200: the flood's connections are capped per client address
// (server.maxConnsPerClient), so it cannot take the connections honest senders need.
func TestReconnectFloodSparesHonestSenders(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		testenv.Require(t, "prlimit (util-linux) is needed to run the daemon under a low open-file limit")
	}
	const (
		nofile    = 256
		attackers = 400
		attackFor = 15 * time.Second
	)
	floodFrom := []string{"127.0.0.2", "127.0.0.3"}
	bin := buildPromoter(t)
	dir := t.TempDir()
	staging := testenv.StartRegistry(t)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	d, logPath := startServeBinary(t, bin, dir, listen, newDaemonConfig(t, withListeners(listen, metrics, "", filepath.Join(dir, "data")),
		withPipeline(pipelineConfig{Name: "app", Platforms: []string{"linux/amd64"}, Staging: staging.Host + "/team/app"})), nofile)

	ctx, stop := context.WithTimeout(context.Background(), attackFor)
	defer stop()
	var f flood
	var wg sync.WaitGroup
	for i := range attackers {
		wg.Go(func() { f.attack(ctx, listen, floodFrom[i%len(floodFrom)], i%2 == 0) })
	}

	// Let the flood take every connection it can before the honest traffic starts.
	waitShedding(t, metrics)
	// One honest sender opens a new connection per notification, the other keeps its
	// connection open between them, as distribution's notification sender does.
	honest := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	keepAlive := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	h := sendHonestly(ctx, d.URL, honest, keepAlive)
	wg.Wait()

	t.Logf("open-file limit %d; %d attackers from %s for %s: %d connections (%d/s), %d closed or refused by the server, %d dials failed",
		nofile, attackers, strings.Join(floodFrom, ", "), attackFor, f.dials.Load(), f.dials.Load()/int64(attackFor/time.Second),
		f.dropped.Load(), f.dialErrs.Load())
	t.Logf("honest notifications from 127.0.0.1 (half on a new connection each, half on one kept open): %s", h)
	if m, err := scrape(metrics); err == nil {
		t.Logf("daemon metrics:\n%s", m)
	}
	h.check(t, "the flood")
	if f.dropped.Load() == 0 {
		t.Error("the server never closed or refused a flood connection: the flood did not reach any bound")
	}
	if strings.Contains(readFile(logPath), "too many open files") {
		t.Errorf("the daemon ran out of descriptors:\n%s", lastLinesOf(readFile(logPath), 20))
	}
}

// flood counts what the attackers of TestReconnectFloodSparesHonestSenders did.
type flood struct {
	dials, dropped, dialErrs atomic.Int64
}

// attack connects from the address from, sends headers and then a body at one byte per
// second, and connects again at once whenever the server answers or drops the
// connection, until ctx ends.
func (f *flood) attack(ctx context.Context, addr, from string, withToken bool) {
	dialer := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	head := "POST /v1/events/registry HTTP/1.1\r\nHost: promoter\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n"
	if withToken {
		head += "Authorization: Bearer " + registryToken + "\r\n"
	}
	for ctx.Err() == nil {
		c, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			if ctx.Err() == nil {
				f.dialErrs.Add(1)
				if errors.Is(err, syscall.EADDRNOTAVAIL) {
					time.Sleep(100 * time.Millisecond) // the scenario: the attacker backs off while the address's ports are all in TIME_WAIT
				}
			}
			continue
		}
		f.dials.Add(1)
		if trickle(ctx, c, head+"\r\n") {
			f.dropped.Add(1)
		}
		_ = c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT on our side: reconnect at once
		c.Close()
	}
}
