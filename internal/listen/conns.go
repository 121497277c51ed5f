package listen

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/promoter-dev/promoter/internal/metrics"
)

// Conns is a connection budget shared by the listeners of one process. Past it, a new
// connection closes the one that has been reading its request body the longest (a slow
// client), or else the longest idle keep-alive connection, or else one that has waited
// more than a second for its headers. Connections that have just arrived are never shed:
// while only those are in the way, accepting waits for them to show what they are. Only
// when every connection is busy working is the new one refused with a 503. The process so
// stays below its open-file limit, and a connection that is ready is never the one dropped.
// Each listener may also bound one client address's share of the budget
// (Limits.MaxConnsPerClient): past it, the address makes room among its own connections.
type Conns struct {
	max         int
	headerGrace time.Duration // a new connection is not shed before this
	wait        time.Duration // how long an accept waits for a slot to be sheddable
	log         *slog.Logger
	metrics     *metrics.Metrics
	now         func() time.Time
	changed     chan struct{} // a connection changed state or left

	mu   sync.Mutex
	open map[*conn]struct{}
	// clients counts the open connections of each client address (clientKey).
	clients map[string]int
}

// NewConns makes a budget of max connections; max <= 0 means AutoMaxConns(). The logger
// and metrics default to discarding.
func NewConns(max int, log *slog.Logger, m *metrics.Metrics) *Conns {
	if max <= 0 {
		max = AutoMaxConns()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = metrics.Discard()
	}
	return &Conns{
		max: max, headerGrace: headerGrace, wait: time.Second, log: log, metrics: m, now: time.Now,
		changed: make(chan struct{}, 1), open: map[*conn]struct{}{}, clients: map[string]int{},
	}
}

// Max is the budget.
func (cs *Conns) Max() int { return cs.max }

// Open is the number of connections open now.
func (cs *Conns) Open() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.open)
}

// conn is an accepted connection and what its server is doing with it.
type conn struct {
	net.Conn
	listener string
	cs       *Conns
	client   string // clientKey of its remote address

	// guarded by cs.mu
	state   http.ConnState
	working bool      // a handler is running with the whole body received
	since   time.Time // when the current state began
	gone    bool
}

// Close closes the connection and leaves the budget.
func (c *conn) Close() error {
	c.cs.remove(c)
	return c.Conn.Close()
}

// headerGrace is how long a new connection may wait for its headers to be read before it
// can be shed: an honest client sends them with its first packet, so only scheduling
// delays them, by milliseconds.
const headerGrace = time.Second

// Shed reasons, the values of the reason label.
const (
	shedSlowBody    = "slow_body"
	shedIdle        = "idle"
	shedSlowHeaders = "slow_headers"
	shedRefused     = "refused"
	// shedClientCap: refused because its client address holds its whole share
	// (Limits.MaxConnsPerClient) and none of those connections can be shed.
	shedClientCap = "client_cap"
)

// add takes a budget slot for a freshly accepted connection, shedding another one when the
// budget is spent. When nothing can be shed yet because the other connections have just
// arrived and their headers are still unread, it waits (up to a second, holding back the
// accept loop) for one of them to show what it is. A client address that already holds
// perClient connections (0, or the whole budget: no cap) makes room among its own only:
// one of them is shed, or, when all of them have just arrived or are working, the new one
// is refused at once, without waiting; it never takes the place of another address's
// connection. It returns nil when the connection was refused (answered 503 and closed).
func (cs *Conns) add(listener string, nc net.Conn, perClient int) *conn {
	c := &conn{Conn: nc, listener: listener, cs: cs, state: http.StateNew, client: clientKey(nc.RemoteAddr())}
	if perClient >= cs.max {
		perClient = 0 // one address may take the whole budget: the budget's rules alone apply
	}
	giveUp := cs.now().Add(cs.wait)
	for {
		cs.mu.Lock()
		now := cs.now()
		c.since = now
		var victim *conn
		var reason string
		switch {
		case perClient > 0 && cs.clients[c.client] >= perClient:
			if victim, reason = cs.victimLocked(now, c.client); victim == nil {
				cs.mu.Unlock()
				cs.metrics.HTTPConnectionsShed.WithLabelValues(listener, shedClientCap).Inc()
				cs.log.Debug("connection refused: its client address holds server.maxConnsPerClient connections", "listener", listener,
					"remote", nc.RemoteAddr().String(), "max_conns_per_client", perClient)
				refuse(nc, clientRefusal)
				return nil
			}
			cs.removeLocked(victim)
		case len(cs.open) >= cs.max:
			if victim, reason = cs.victimLocked(now, ""); victim != nil {
				cs.removeLocked(victim)
			}
		}
		if len(cs.open) < cs.max {
			cs.open[c] = struct{}{}
			cs.clients[c.client]++
			cs.mu.Unlock()
			cs.metrics.HTTPConnections.WithLabelValues(listener).Inc()
			if victim != nil {
				cs.metrics.HTTPConnectionsShed.WithLabelValues(victim.listener, reason).Inc()
				cs.log.Debug("connection shed", "listener", victim.listener, "reason", reason,
					"remote", victim.RemoteAddr().String(), "age", now.Sub(victim.since).String())
				_ = victim.Conn.Close()
			}
			return c
		}
		young := cs.youngLocked(now)
		cs.mu.Unlock()
		if !young || !now.Before(giveUp) {
			cs.metrics.HTTPConnectionsShed.WithLabelValues(listener, shedRefused).Inc()
			cs.log.Debug("connection refused: every connection is busy", "listener", listener, "remote", nc.RemoteAddr().String(), "max_conns", cs.max)
			refuse(nc, refusal)
			return nil
		}
		select {
		case <-cs.changed:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// victimLocked picks the connection to shed, in this order: the one that has been reading
// its request body the longest (its headers arrived, its body has not: a slow client,
// never one that is ready); else the longest idle keep-alive connection; else the one
// waiting longest for its headers, once that is more than headerGrace. A connection that
// has just arrived is never shed: its headers may be in its socket already, unread only
// because its goroutine has not run yet. client, unless "", limits the choice to that
// client address's connections. nil when nothing can be shed.
func (cs *Conns) victimLocked(now time.Time, client string) (*conn, string) {
	var body, idle, head *conn
	older := func(a, b *conn) bool { return b == nil || a.since.Before(b.since) }
	for c := range cs.open {
		switch {
		case client != "" && c.client != client, c.working:
		case c.state == http.StateActive:
			if older(c, body) {
				body = c
			}
		case c.state == http.StateIdle:
			if older(c, idle) {
				idle = c
			}
		case now.Sub(c.since) >= cs.headerGrace:
			if older(c, head) {
				head = c
			}
		}
	}
	switch {
	case body != nil:
		return body, shedSlowBody
	case idle != nil:
		return idle, shedIdle
	case head != nil:
		return head, shedSlowHeaders
	}
	return nil, shedRefused
}

// youngLocked reports whether a connection waits for its headers for less than
// headerGrace: waiting for it may free a slot.
func (cs *Conns) youngLocked(now time.Time) bool {
	for c := range cs.open {
		if !c.working && c.state == http.StateNew && now.Sub(c.since) < cs.headerGrace {
			return true
		}
	}
	return false
}

// signal wakes an accept waiting for a connection to change state.
func (cs *Conns) signal() {
	select {
	case cs.changed <- struct{}{}:
	default:
	}
}

func (cs *Conns) remove(c *conn) {
	cs.mu.Lock()
	cs.removeLocked(c)
	cs.mu.Unlock()
}

// removeLocked drops c from the budget, once.
func (cs *Conns) removeLocked(c *conn) {
	if c.gone {
		return
	}
	c.gone = true
	delete(cs.open, c)
	if cs.clients[c.client]--; cs.clients[c.client] <= 0 {
		delete(cs.clients, c.client)
	}
	cs.metrics.HTTPConnections.WithLabelValues(c.listener).Dec()
	cs.signal()
}

// track follows the server's view of a connection (http.Server.ConnState).
func (cs *Conns) track(nc net.Conn, s http.ConnState) {
	c, ok := nc.(*conn)
	if !ok {
		return
	}
	if s == http.StateClosed || s == http.StateHijacked {
		cs.remove(c)
		return
	}
	cs.mu.Lock()
	// A connection waits for its headers from its arrival; every other state (reading the
	// body, idle) is timed from its start.
	if s != http.StateNew {
		c.since = cs.now()
	}
	c.state = s
	cs.mu.Unlock()
	cs.signal()
}

// setWorking marks whether a handler is working on c's request with its body received.
func (cs *Conns) setWorking(c *conn, working bool) {
	cs.mu.Lock()
	c.working, c.since = working, cs.now()
	cs.mu.Unlock()
	cs.signal()
}

// refusal and clientRefusal are the whole answer to a connection past the budget, and past
// its client address's share of it.
var (
	refusal       = unavailable("too many connections; retry in a second\n")
	clientRefusal = unavailable("too many connections from your address (server.maxConnsPerClient); retry in a second\n")
)

func unavailable(body string) string {
	return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\n" +
		"Connection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// refuse answers a connection that got no budget with answer and closes it. It runs in
// the accept loop, so that a flood of refused connections never holds more descriptors
// than the one being refused: the answer fits the new socket's empty send buffer, so
// nothing waits for the client (the deadline is a guard).
func refuse(nc net.Conn, answer string) {
	_ = nc.SetDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(nc, answer)
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = nc.Close()
}

// clientKey is the client address a connection counts against for the per-client cap:
// the IP address of an IPv4 client, the /64 prefix of an IPv6 one (one host commonly holds
// a whole /64), or the address as a string when it is no IP address.
func clientKey(a net.Addr) string {
	var ip netip.Addr
	if ta, ok := a.(*net.TCPAddr); ok {
		ip = ta.AddrPort().Addr()
	} else if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		ip = ap.Addr()
	} else {
		return a.String()
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String()
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return ip.String()
	}
	return p.String()
}

// listener is a net.Listener whose connections count against a budget, perClient of them
// at most from one client address (0: no cap).
type listener struct {
	net.Listener
	name      string
	cs        *Conns
	perClient int
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c := l.cs.add(l.name, nc, l.perClient); c != nil {
			return c, nil
		}
	}
}
