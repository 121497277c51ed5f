package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/testenv"
)

// slowBody is what the attack measured: how long the server let each attacking connection
// live, and what became of the honest requests sent meanwhile.
type slowBody struct {
	mu        sync.Mutex
	lifetimes []time.Duration // per attacking connection, dial to closed by the server
	dialErrs  atomic.Int64
}

func (s *slowBody) died(d time.Duration) {
	s.mu.Lock()
	s.lifetimes = append(s.lifetimes, d)
	s.mu.Unlock()
}

// TestSlowBodyAttackSparesHonestSenders runs the real `promoter serve` under an open-file
// limit of 256 while 400 clients from 127.0.0.2 send request headers and then a body at
// one byte per second (half of them with the right registry token), reconnecting whenever
// the server drops them: more connections than the process has descriptors. Meanwhile an
// honest registry on 127.0.0.1 sends notifications, each on a new connection, and a probe
// asks /readyz the way the kubelet does (3 s timeout). Every honest notification must get a 2xx, every probe a
// 200, and no attacking connection may live through the whole attack.
func TestSlowBodyAttackSparesHonestSenders(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		testenv.Require(t, "prlimit (util-linux) is needed to run the daemon under a low open-file limit")
	}
	const (
		nofile    = 256
		attackers = 400
		attackFor = 15 * time.Second
	)
	bin := buildPromoter(t)
	dir := t.TempDir()
	staging := testenv.StartRegistry(t)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	status := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	d, logPath := startServeBinary(t, bin, dir, listen, newDaemonConfig(t, withListeners(listen, metrics, status, filepath.Join(dir, "data")),
		withPipeline(pipelineConfig{Name: "app", Platforms: []string{"linux/amd64"}, Staging: staging.Host + "/team/app"})), nofile)

	ctx, stop := context.WithTimeout(context.Background(), attackFor)
	defer stop()
	var sb slowBody
	var wg sync.WaitGroup
	for i := range attackers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			attack(ctx, listen, i%2 == 0, &sb)
		}()
	}

	// Let the attackers take every descriptor they can before the honest traffic starts.
	waitShedding(t, metrics)
	honest := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	h := sendHonestly(ctx, d.URL, honest)
	wg.Wait()

	sb.mu.Lock()
	lives := slices.Clone(sb.lifetimes)
	sb.mu.Unlock()
	slices.Sort(lives)
	var median, longest time.Duration
	if len(lives) > 0 {
		median, longest = lives[len(lives)/2], lives[len(lives)-1]
	}
	t.Logf("open-file limit %d; %d attackers from 127.0.0.2 for %s: %d connections closed by the server (median life %s, longest %s), %d dials failed",
		nofile, attackers, attackFor, len(lives), median.Round(10*time.Millisecond), longest.Round(10*time.Millisecond), sb.dialErrs.Load())
	t.Logf("honest notifications from 127.0.0.1 (each on a new connection): %s", h)
	if m, err := scrape(metrics); err == nil {
		t.Logf("daemon metrics:\n%s", m)
	}
	h.check(t, "the attack")
	if len(lives) == 0 || longest >= attackFor {
		t.Errorf("attacking connections lived through the whole attack (%d closed by the server, longest %s), want every one cut short",
			len(lives), longest)
	}
	if strings.Contains(readFile(logPath), "too many open files") {
		t.Errorf("the daemon ran out of descriptors:\n%s", lastLinesOf(readFile(logPath), 20))
	}
}

// attack opens connections from 127.0.0.2, another address than the honest senders',
// that send headers and then a body at one byte per second, and opens a new one (after a
// short pause) whenever the server drops one, until ctx ends.
func attack(ctx context.Context, addr string, withToken bool, sb *slowBody) {
	dialer := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	for ctx.Err() == nil {
		start := time.Now()
		c, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			if ctx.Err() == nil {
				sb.dialErrs.Add(1)
				time.Sleep(100 * time.Millisecond) // the scenario: an attacker backs off when dials fail
			}
			continue
		}
		head := "POST /v1/events/registry HTTP/1.1\r\nHost: promoter\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n"
		if withToken {
			head += "Authorization: Bearer " + registryToken + "\r\n"
		}
		closed := trickle(ctx, c, head+"\r\n")
		c.Close()
		if closed {
			sb.died(time.Since(start))
		}
		time.Sleep(50 * time.Millisecond) // the scenario: an attacker's reconnect pace
	}
}

// trickle writes head, then one byte a second, and reports whether the server closed the
// connection (or answered) before ctx ended.
func trickle(ctx context.Context, c net.Conn, head string) bool {
	if _, err := io.WriteString(c, head); err != nil {
		return true
	}
	buf := make([]byte, 512)
	for ctx.Err() == nil {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(buf); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return true // an answer (408, 503, ...) or the connection closed
		}
		if _, err := c.Write([]byte("{")); err != nil {
			return true
		}
	}
	return false
}

// honestTally is what the honest senders of an attack test saw (sendHonestly).
type honestTally struct {
	ok, failed, probeOK, probeFailed int
	slowest, slowestProbe            time.Duration
	failures                         []string
}

// sendHonestly is the honest traffic of an attack test: until ctx ends, a registry
// notification to the daemon at base every 50 ms, the senders taking turns, and a /readyz
// probe on the first sender every 250 ms.
func sendHonestly(ctx context.Context, base string, senders ...*http.Client) honestTally {
	var h honestTally
	probe := time.NewTicker(250 * time.Millisecond)
	defer probe.Stop()
	for n := 0; ctx.Err() == nil; n++ {
		select {
		case <-probe.C:
			start := time.Now()
			err := readyz(senders[0], base)
			h.slowestProbe = max(h.slowestProbe, time.Since(start))
			if err != nil {
				h.probeFailed++
				h.failures = append(h.failures, "readyz: "+err.Error())
			} else {
				h.probeOK++
			}
		default:
		}
		start := time.Now()
		err := notify(senders[n%len(senders)], base, fmt.Sprintf("r%d", n))
		h.slowest = max(h.slowest, time.Since(start))
		if err != nil {
			h.failed++
			h.failures = append(h.failures, "notification: "+err.Error())
		} else {
			h.ok++
		}
		time.Sleep(50 * time.Millisecond) // the scenario: honest senders' pace, not a wait
	}
	return h
}

func (h honestTally) String() string {
	return fmt.Sprintf("%d ok, %d failed, slowest %s; /readyz probes: %d ok, %d failed, slowest %s",
		h.ok, h.failed, h.slowest.Round(time.Millisecond), h.probeOK, h.probeFailed, h.slowestProbe.Round(time.Millisecond))
}

// check fails t when an honest request failed during the attack, or none was made.
func (h honestTally) check(t *testing.T, attack string) {
	t.Helper()
	if h.failed > 0 || h.probeFailed > 0 {
		t.Errorf("%d honest notifications and %d probes failed during %s, want none; first failures:\n%s",
			h.failed, h.probeFailed, attack, strings.Join(h.failures[:min(len(h.failures), 10)], "\n"))
	}
	if h.ok == 0 || h.probeOK == 0 {
		t.Errorf("no honest request was made (%d notifications, %d probes)", h.ok, h.probeOK)
	}
}

func notify(c *http.Client, base, rev string) error {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	body := fmt.Sprintf(`{"events":[{"id":%q,"timestamp":"2026-12-01T00:00:00Z","action":"push",
		"target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s%s","repository":"team/app","tag":"%s-amd64"},
		"request":{"host":"staging"}}]}`, hex.EncodeToString(id), hex.EncodeToString(id), hex.EncodeToString(id), rev)
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/events/registry", bytes.NewReader([]byte(body)))
	req.Header = notifyHeaders()
	req.Header.Set("Content-Type", "application/vnd.docker.distribution.events.v2+json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 || !bytes.Contains(b, []byte(`"accepted":1`)) {
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return nil
}

func readyz(c *http.Client, base string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// waitShedding waits until the daemon whose metrics listener is addr has shed a webhook
// connection to stay within its connection budget: the attack holds every connection it
// can get.
func waitShedding(t *testing.T, addr string) {
	t.Helper()
	err := testenv.WaitFor(5*time.Second, func() error {
		m, err := scrape(addr)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(m, "\n") {
			f := strings.Fields(l)
			if len(f) == 2 && strings.HasPrefix(f[0], "promoter_http_connections_shed_total{") &&
				strings.Contains(f[0], `listener="webhook"`) && f[1] != "0" {
				return nil
			}
		}
		return errors.New("no webhook connection shed yet")
	})
	if err != nil {
		t.Fatalf("the attack did not fill the connection budget: %v", err)
	}
}

// scrape returns the daemon's promoter_http_* metrics.
func scrape(addr string) (string, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "promoter_http_") {
			out = append(out, "  "+l)
		}
	}
	return strings.Join(out, "\n"), err
}

func lastLinesOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
