package listen

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/metrics"
)

// dialFrom opens a raw connection from the loopback address from (127.0.0.0/8 is all
// local) and writes what is given.
func dialFrom(t *testing.T, addr, from, send string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if send != "" {
		if _, err := c.Write([]byte(send)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// closedByServer reports whether the server closed c (or answered it) within a few seconds.
func closedByServer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return err == nil || !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// openFrom counts the budget's connections from the client address from.
func openFrom(cs *Conns, from string) int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.clients[from]
}

// TestPerClientCap: an address that holds its share of the budget makes room among its
// own connections only (the slowest reader first), or is refused at once when all of its
// connections have just arrived; another address's connections are never closed for it,
// and it is served while the flooding address is at its cap.
func TestPerClientCap(t *testing.T) {
	tests := []struct {
		name string
		// flood is what each of the flooding address's first two connections sends.
		flood string
		// wantShed is the reason the third flooding connection was made room for;
		// "" when it is refused.
		wantShed string
	}{
		{"its slowest reader makes room", slowPost, shedSlowBody},
		{"refused while its own connections just arrived", "POST /work HTTP/1.1\r\nHost: t\r\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newBlocking()
			close(h.release)
			m := metrics.New(prometheus.NewRegistry())
			cs := NewConns(8, nil, m)
			_, addr := testServer(t, h, WithConns(cs), WithMetrics(m), WithLimits(Limits{MaxConnsPerClient: 2}))
			// Another address's slow reader, older than all of the flood: the budget would
			// shed it first, the per-client cap never does.
			other := dialFrom(t, addr, "127.0.0.3", slowPost)
			waitOpen(t, cs, 1)
			first := dialFrom(t, addr, "127.0.0.2", tc.flood)
			waitOpen(t, cs, 2)
			dialFrom(t, addr, "127.0.0.2", tc.flood)
			waitOpen(t, cs, 3)
			if tc.wantShed != "" {
				waitActive(t, cs, 3)
			}
			third := dialFrom(t, addr, "127.0.0.2", slowPost)
			if tc.wantShed == "" {
				resp := response(t, third)
				if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
					t.Errorf("past its share: got %s Retry-After %q, want 503 with Retry-After 1", resp.Status, resp.Header.Get("Retry-After"))
				}
				if got := testutil.ToFloat64(m.HTTPConnectionsShed.WithLabelValues("test", shedClientCap)); got != 1 {
					t.Errorf("shed client_cap = %v, want 1", got)
				}
			} else {
				if !closedByServer(first) {
					t.Error("the flooding address's oldest slow reader is still open, want it closed to make room")
				}
				if got := testutil.ToFloat64(m.HTTPConnectionsShed.WithLabelValues("test", tc.wantShed)); got != 1 {
					t.Errorf("shed %s = %v, want 1", tc.wantShed, got)
				}
			}
			if got := openFrom(cs, "127.0.0.2"); got > 2 {
				t.Errorf("the flooding address holds %d connections, want at most 2", got)
			}
			// Another address is served while the flooding one is at its cap.
			if resp := response(t, dialFrom(t, addr, "127.0.0.1", post("honest"))); resp.StatusCode != http.StatusOK {
				t.Errorf("another address's request: got %s, want 200", resp.Status)
			}
			_ = other.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := other.Read(make([]byte, 1)); !isTimeout(err) {
				t.Errorf("the other address's slow reader: %v, want it left open", err)
			}
		})
	}
}

// TestDefaultMaxConnsPerClient: without a setting, an address gets a quarter of the budget.
func TestDefaultMaxConnsPerClient(t *testing.T) {
	for _, tt := range []struct{ budget, want int }{{1, 1}, {16, 4}, {128, 32}, {1024, 256}} {
		cs := NewConns(tt.budget, nil, nil)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s, err := New("test", lis, http.NotFoundHandler(), WithConns(cs))
		lis.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Limits().MaxConnsPerClient; got != tt.want {
			t.Errorf("budget %d: got %d per client, want %d", tt.budget, got, tt.want)
		}
	}
}

// TestClientKey: IPv4 clients count by address, IPv6 ones by /64, IPv4-mapped ones as IPv4.
func TestClientKey(t *testing.T) {
	for _, tt := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.2"), Port: 4000}, "127.0.0.2"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3"), Port: 4000}, "10.1.2.3"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2::1"), Port: 4000}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::9"), Port: 80, Zone: "eth0"}, "2001:db8:1:2::/64"},
		{&net.UnixAddr{Name: "/run/promoter.sock", Net: "unix"}, "/run/promoter.sock"},
	} {
		if got := clientKey(tt.addr); got != tt.want {
			t.Errorf("clientKey(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}
