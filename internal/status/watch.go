package status

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// watcher serves GET /v1/watch[?pipeline=NAME]: the revisions written from now on, as
// server-sent events (text/event-stream), one event per write:
//
//	event: ready                       once the watch is open: read the state now
//	data: {}
//
//	event: revision                    a revision as it was written
//	data: {"pipeline":"app",...}
//
// and a comment line every keepAlive while idle. It watches the KV bucket (Reader.Watch)
// rather than polling it: every replica's writes reach every replica's watchers as they
// happen, an idle stream costs nothing, and no read ever lists the bucket. A client reads
// the state it shows after "ready", so that no write falls between its read and the
// stream; when the stream ends (a restart, the bus away) it connects again and reads again.
type watcher struct {
	st        Reader
	keepAlive time.Duration
	log       *slog.Logger
	closed    <-chan struct{} // Handler.Close
}

func (wt *watcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pipeline := r.URL.Query().Get("pipeline")
	ch, err := wt.st.Watch(r.Context(), pipeline)
	if err != nil {
		stateUnavailable(w, err)
		return
	}
	rc := http.NewResponseController(w)
	// The server's read timeout (server.readTimeout) would end the request once it passed,
	// as the server reads on to see the client leave: a stream has no more to read.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx and its kin: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	// The server's write timeout (server.writeTimeout) bounds one response; each event
	// pushes it back, so that a stream lives as long as its client.
	send := func(format string, args ...any) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(wt.keepAlive + 10*time.Second))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send("retry: 1000\nevent: ready\ndata: {}\n\n") {
		return
	}
	tick := time.NewTicker(wt.keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-wt.closed:
			return
		case <-tick.C:
			if !send(": keep-alive\n\n") {
				return
			}
		case rev, ok := <-ch:
			if !ok {
				wt.log.Debug("revision watch ended; the client connects again", "pipeline", pipeline)
				return
			}
			data, err := json.Marshal(rev)
			if err != nil {
				continue
			}
			// JSON holds no raw newline, so one data line is the whole event.
			if !send("event: revision\ndata: %s\n\n", data) {
				return
			}
		}
	}
}
