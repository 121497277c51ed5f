package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/notifications"
)

// watcher receives the registries' notifications on a loopback listener of the bench's
// own: each registry sends them to a second endpoint, /<name>, next to the daemon's. A
// manifest push by tag is recorded with the registry's own timestamp (set when the
// manifest was stored), so what is measured excludes the delivery to the bench and adds no
// request to the registries.
type watcher struct {
	URL   string // http://127.0.0.1:PORT
	Token string

	srv  *http.Server
	mu   sync.Mutex
	seen map[string]pushSeen
	wake chan struct{} // closed and replaced on every push
}

type pushSeen struct {
	At     time.Time // the event's timestamp
	Digest string
}

// envelope is notifications.Envelope with the concrete event type, which decodes.
type envelope struct {
	Events []notifications.Event `json:"events"`
}

func startWatcher() (*watcher, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench notification listener: %w", err)
	}
	w := &watcher{URL: "http://" + l.Addr().String(), Token: "bench-watcher", seen: map[string]pushSeen{}, wake: make(chan struct{})}
	w.srv = &http.Server{Handler: http.HandlerFunc(w.serve), ReadHeaderTimeout: 5 * time.Second}
	go w.srv.Serve(l)
	return w, nil
}

func (w *watcher) Close() { w.srv.Close() }

// endpoint is the notification endpoint a registry named reg sends to the watcher.
func (w *watcher) endpoint(reg string) notifyEndpoint {
	return notifyEndpoint{Name: "bench", URL: w.URL + "/" + reg, Token: w.Token}
}

func (w *watcher) serve(rw http.ResponseWriter, req *http.Request) {
	if req.Header.Get("Authorization") != "Bearer "+w.Token {
		http.Error(rw, "wrong token", http.StatusUnauthorized)
		return
	}
	reg := strings.TrimPrefix(req.URL.Path, "/")
	var env envelope
	if err := json.NewDecoder(req.Body).Decode(&env); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	for _, e := range env.Events {
		if e.Action != notifications.EventActionPush || e.Target.Tag == "" {
			continue
		}
		w.seen[key(reg, e.Target.Repository, e.Target.Tag)] = pushSeen{At: e.Timestamp, Digest: e.Target.Digest.String()}
	}
	close(w.wake)
	w.wake = make(chan struct{})
	w.mu.Unlock()
}

func key(reg, repo, tag string) string { return reg + "/" + repo + ":" + tag }

// wait returns the push of repo:tag that registry reg reported, waiting up to timeout.
func (w *watcher) wait(ctx context.Context, reg, repo, tag string, timeout time.Duration) (pushSeen, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	k := key(reg, repo, tag)
	for {
		w.mu.Lock()
		s, ok := w.seen[k]
		wake := w.wake
		w.mu.Unlock()
		if ok {
			return s, nil
		}
		select {
		case <-wake:
		case <-deadline.C:
			return pushSeen{}, fmt.Errorf("%s registry reported no push of %s:%s in %s", reg, repo, tag, timeout)
		case <-ctx.Done():
			return pushSeen{}, ctx.Err()
		}
	}
}
