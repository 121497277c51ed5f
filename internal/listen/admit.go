package listen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
)

// admission runs a handler only once the request's body has arrived, and only while
// fewer than max requests are being worked on, so that the cap counts work (publishing),
// never a client trickling bytes.
type admission struct {
	s       *Server
	slots   chan struct{}
	maxBody int64
	probes  map[string]bool
}

type connKey struct{}

func (a *admission) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.readBody(w, r) {
			return
		}
		c, _ := r.Context().Value(connKey{}).(*conn)
		if !a.probes[r.URL.Path] {
			select {
			case a.slots <- struct{}{}:
				defer func() { <-a.slots }()
			default:
				a.s.metrics.HTTPRejected.WithLabelValues(a.s.name, "in_flight").Inc()
				w.Header().Set("Retry-After", "1")
				http.Error(w, "too many requests in flight (server.maxInFlight); retry in a second", http.StatusServiceUnavailable)
				return
			}
		}
		if c != nil {
			c.cs.setWorking(c, true)
			defer c.cs.setWorking(c, false)
		}
		a.s.metrics.HTTPInFlight.WithLabelValues(a.s.name).Inc()
		defer a.s.metrics.HTTPInFlight.WithLabelValues(a.s.name).Dec()
		h.ServeHTTP(w, r)
	})
}

// readBody reads up to maxBody bytes of the body (within the server's read deadline) and
// gives the handler a body that replays them. A body larger than that is handed on
// unread past the limit, for the handler to reject. It answers 408 and reports false
// when the body did not arrive in time.
func (a *admission) readBody(w http.ResponseWriter, r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, a.maxBody+1))
	if err != nil {
		// Too slow (the read deadline passed), shed to make room, or the client left.
		reason := "body_aborted"
		if errors.Is(err, os.ErrDeadlineExceeded) {
			reason = "body_timeout"
		}
		a.s.metrics.HTTPRejected.WithLabelValues(a.s.name, reason).Inc()
		a.s.log.Debug("request body not received", "listener", a.s.name, "remote", r.RemoteAddr, "read", len(buf), "error", err)
		w.Header().Set("Connection", "close")
		http.Error(w, "request body not received within server.readTimeout ("+a.s.limits.ReadTimeout.String()+"): "+err.Error(), http.StatusRequestTimeout)
		return false
	}
	rest := io.Reader(bytes.NewReader(buf))
	if int64(len(buf)) > a.maxBody {
		rest = io.MultiReader(rest, r.Body)
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{rest, r.Body}
	return true
}

// withConn puts the connection into its requests' context, for admission to mark it busy.
func withConn(ctx context.Context, c *conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}
