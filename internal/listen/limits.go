package listen

import (
	"fmt"
	"time"
)

// Limits bounds one listener. A zero field takes its default.
type Limits struct {
	// ReadHeaderTimeout bounds reading the request line and headers. Default 5s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading the whole request, headers and body, from its first
	// byte: a body sent slower is cut off with 408. Default 10s.
	ReadTimeout time.Duration
	// WriteTimeout bounds handling and writing the response once the headers are read.
	// Default 30s.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection with no request for this long. Default 30s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers; larger ones get 431. Default 32 KiB.
	MaxHeaderBytes int
	// MaxBodyBytes is how much of a body is read before the request takes an in-flight
	// slot; the handler enforces its own limit on what follows. Default 1 MiB.
	MaxBodyBytes int64
	// MaxInFlight bounds requests being worked on (body received) at once; past it the
	// answer is 503 with Retry-After. Default 64.
	MaxInFlight int
	// MaxConnsPerClient bounds the connections one client address (an IPv4 address, an
	// IPv6 /64) holds of the connection budget, all listeners sharing it together. Past
	// it, a new connection from that address closes one of the address's own (the same
	// order as the budget's), or is refused with a 503 at once when they are all working
	// or have just arrived; it never closes another address's connection. Default a
	// quarter of the budget (DefaultMaxConnsPerClient); the budget or more turns it off.
	MaxConnsPerClient int
}

// Default limits, documented on Limits.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 30 * time.Second
	DefaultMaxHeaderBytes    = 32 << 10
	DefaultMaxBodyBytes      = 1 << 20
	DefaultMaxInFlight       = 64
)

// withDefaults fills the zero fields and rejects negative ones.
func (l Limits) withDefaults() (Limits, error) {
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"read header timeout", &l.ReadHeaderTimeout, DefaultReadHeaderTimeout},
		{"read timeout", &l.ReadTimeout, DefaultReadTimeout},
		{"write timeout", &l.WriteTimeout, DefaultWriteTimeout},
		{"idle timeout", &l.IdleTimeout, DefaultIdleTimeout},
	} {
		if *f.v < 0 {
			return l, fmt.Errorf("%s %w, got %s", f.name, ErrNegativeLimit, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if l.MaxHeaderBytes < 0 || l.MaxBodyBytes < 0 || l.MaxInFlight < 0 || l.MaxConnsPerClient < 0 {
		return l, fmt.Errorf("limits %w: %+v", ErrNegativeLimit, l)
	}
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxBodyBytes == 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if l.MaxInFlight == 0 {
		l.MaxInFlight = DefaultMaxInFlight
	}
	if l.ReadHeaderTimeout > l.ReadTimeout {
		l.ReadHeaderTimeout = l.ReadTimeout
	}
	return l, nil
}

// DefaultMaxConnsPerClient is MaxConnsPerClient's default for a budget of maxConns: a
// quarter of it, at least 1, so that a flood from one address, or from three, leaves the
// rest of the budget to everyone else.
func DefaultMaxConnsPerClient(maxConns int) int { return max(maxConns/4, 1) }
