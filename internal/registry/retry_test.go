package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// flaky answers the first len(statuses) requests with those statuses (0 = drop the
// connection), then 200 with the request body echoed.
func flaky(t *testing.T, statuses []int, header http.Header) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		body, _ := io.ReadAll(r.Body)
		if i < len(statuses) {
			if statuses[i] == 0 {
				conn, _, _ := w.(http.Hijacker).Hijack()
				conn.Close()
				return
			}
			for k, v := range header {
				w.Header()[k] = v
			}
			w.WriteHeader(statuses[i])
			return
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestRetryTransport(t *testing.T) {
	fast := RetryPolicy{MaxAttempts: 4, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	tests := []struct {
		name       string
		statuses   []int
		header     http.Header
		body       func() io.Reader // nil: no body
		streamed   bool             // body without GetBody
		want       int
		wantTries  int64
		minElapsed time.Duration
	}{
		{name: "500 then ok", statuses: []int{500, 502}, want: 200, wantTries: 3},
		{name: "408 and 429 retried", statuses: []int{408, 429}, want: 200, wantTries: 3},
		{name: "connection reset retried", statuses: []int{0}, want: 200, wantTries: 2},
		{name: "404 not retried", statuses: []int{404}, want: 404, wantTries: 1},
		{name: "401 not retried", statuses: []int{401}, want: 401, wantTries: 1},
		{name: "501 not retried", statuses: []int{501}, want: 501, wantTries: 1},
		{name: "gives up after MaxAttempts", statuses: []int{503, 503, 503, 503, 503}, want: 503, wantTries: 4},
		{name: "Retry-After honoured", statuses: []int{429}, header: http.Header{"Retry-After": {"1"}}, want: 200, wantTries: 2, minElapsed: time.Second},
		{name: "replayable body resent", statuses: []int{500}, body: func() io.Reader { return bytes.NewBufferString("manifest") }, want: 200, wantTries: 2},
		{name: "streamed body not resent", statuses: []int{500}, body: func() io.Reader { return strings.NewReader("blob") }, streamed: true, want: 500, wantTries: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, tries := flaky(t, tt.statuses, tt.header)
			c := &http.Client{Transport: NewRetryTransport(http.DefaultTransport, fast)}
			var body io.Reader
			if tt.body != nil {
				body = tt.body()
			}
			req, err := http.NewRequest(http.MethodPut, srv.URL, body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.streamed {
				req.GetBody = nil
				req.Body = io.NopCloser(req.Body)
			}
			start := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("got error %v, want status %d", err, tt.want)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("got status %d, want %d", resp.StatusCode, tt.want)
			}
			if n := tries.Load(); n != tt.wantTries {
				t.Errorf("got %d tries, want %d", n, tt.wantTries)
			}
			if tt.want == 200 && tt.body != nil && string(got) != "manifest" {
				t.Errorf("server got body %q on the retry, want %q", got, "manifest")
			}
			if el := time.Since(start); el < tt.minElapsed {
				t.Errorf("returned after %s, want at least %s (Retry-After)", el, tt.minElapsed)
			}
		})
	}
}

func TestRetryStopsAtDeadline(t *testing.T) {
	srv, tries := flaky(t, []int{429, 429}, http.Header{"Retry-After": {"30"}})
	c := &http.Client{Transport: NewRetryTransport(http.DefaultTransport, RetryPolicy{})}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	_, err := c.Do(req)
	var ra *RetryAfterError
	if !errors.As(err, &ra) || ra.After != 30*time.Second || tries.Load() != 1 {
		t.Errorf("got %v after %d tries, want a RetryAfterError of 30s at once: a 30s Retry-After cannot fit a 2s deadline",
			err, tries.Load())
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		header string
		want   time.Duration
		ok     bool
	}{
		{"", 0, false},
		{"3", 3 * time.Second, true},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second, true},
		{now.Add(-5 * time.Second).Format(http.TimeFormat), 0, true},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		resp := &http.Response{Header: http.Header{}}
		if tt.header != "" {
			resp.Header.Set("Retry-After", tt.header)
		}
		got, ok := RetryAfter(resp, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("RetryAfter(%q) = %s, %v; want %s, %v", tt.header, got, ok, tt.want, tt.ok)
		}
	}
}

func TestBackoffGrowsWithJitterWithinBounds(t *testing.T) {
	p := RetryPolicy{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for attempt, ceiling := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		ceiling *= time.Millisecond
		for range 50 {
			if d := p.Backoff(attempt); d < ceiling/2 || d > ceiling {
				t.Fatalf("Backoff(%d) = %s, want within [%s, %s]", attempt, d, ceiling/2, ceiling)
			}
		}
	}
}

// TestGivingUpKeepsRetryAfter: when the retries of one request end on a response that asks
// to come back later, the caller gets a RetryAfterError carrying the wait, so the step that
// made the request can be rescheduled no sooner than the registry asked.
func TestGivingUpKeepsRetryAfter(t *testing.T) {
	tests := []struct {
		name      string
		policy    RetryPolicy
		header    http.Header
		wantAfter time.Duration
	}{
		{"attempts exhausted", RetryPolicy{MaxAttempts: 2, MinBackoff: time.Millisecond}, http.Header{"Retry-After": {"1"}}, time.Second},
		{"Retry-After beyond what we wait inline", RetryPolicy{MaxAttempts: 5, MaxRetryAfter: time.Second}, http.Header{"Retry-After": {"30"}}, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := flaky(t, []int{429, 429, 429, 429, 429, 429}, tt.header)
			c := &http.Client{Transport: NewRetryTransport(http.DefaultTransport, tt.policy)}
			_, err := c.Get(srv.URL)
			var ra *RetryAfterError
			if !errors.As(err, &ra) || ra.RetryAfter() != tt.wantAfter || !IsStatus(err, http.StatusTooManyRequests) {
				t.Fatalf("got %v, want a RetryAfterError of %s naming the 429", err, tt.wantAfter)
			}
		})
	}
	// Without Retry-After the last response is returned as it is.
	srv, _ := flaky(t, []int{503, 503, 503}, nil)
	c := &http.Client{Transport: NewRetryTransport(http.DefaultTransport, RetryPolicy{MaxAttempts: 2, MinBackoff: time.Millisecond})}
	resp, err := c.Get(srv.URL)
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("got %v %v, want the 503 response", resp, err)
	}
	resp.Body.Close()
}

// TestCheckError: a refusal is an error, one that asks to wait is the RetryAfterError
// carrying the wait, and both keep the registry's status.
func TestCheckError(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		header     http.Header
		wantStatus int           // 0: no error
		wantAfter  time.Duration // 0: not a RetryAfterError
	}{
		{name: "expected status", status: http.StatusCreated},
		{name: "refusal", status: http.StatusNotFound, wantStatus: http.StatusNotFound},
		{name: "throttled without Retry-After", status: http.StatusTooManyRequests, wantStatus: http.StatusTooManyRequests},
		{name: "throttled with Retry-After", status: http.StatusTooManyRequests, header: http.Header{"Retry-After": {"2"}},
			wantStatus: http.StatusTooManyRequests, wantAfter: 2 * time.Second},
		{name: "unavailable with Retry-After", status: http.StatusServiceUnavailable, header: http.Header{"Retry-After": {"1"}},
			wantStatus: http.StatusServiceUnavailable, wantAfter: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := flaky(t, []int{tt.status}, tt.header)
			resp, err := http.Post(srv.URL, "text/plain", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			err = CheckError(resp, http.StatusCreated)
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if !IsStatus(err, tt.wantStatus) {
				t.Errorf("got %v, want status %d", err, tt.wantStatus)
			}
			var ra *RetryAfterError
			if got := errors.As(err, &ra); got != (tt.wantAfter > 0) || (got && ra.RetryAfter() != tt.wantAfter) {
				t.Errorf("got %v, want a RetryAfterError of %s: %v", err, tt.wantAfter, tt.wantAfter > 0)
			}
		})
	}
}

// TestDo: an operation is started over while it fails transiently, waiting the Retry-After
// its error carries, and not when the refusal is definitive or the wait cannot fit.
func TestDo(t *testing.T) {
	errFlake := errors.New("connection reset mid-stream")
	throttled := func(after time.Duration) error {
		return &RetryAfterError{Status: "429 Too Many Requests", After: after, Err: &transport.Error{StatusCode: http.StatusTooManyRequests}}
	}
	denied := &transport.Error{StatusCode: http.StatusForbidden}
	fast := RetryPolicy{MaxAttempts: 3, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxRetryAfter: 2 * time.Second}
	tests := []struct {
		name       string
		errs       []error // op's answers, then nil
		wantTries  int
		wantErr    error
		minElapsed time.Duration
	}{
		{name: "flakes then succeeds", errs: []error{errFlake, errFlake}, wantTries: 3},
		{name: "gives up after MaxAttempts", errs: []error{errFlake, errFlake, errFlake, errFlake}, wantTries: 3, wantErr: errFlake},
		{name: "definitive refusal is not retried", errs: []error{denied}, wantTries: 1, wantErr: denied},
		{name: "context end is not retried", errs: []error{context.Canceled}, wantTries: 1, wantErr: context.Canceled},
		{name: "Retry-After honoured", errs: []error{throttled(time.Second)}, wantTries: 2, minElapsed: time.Second},
		{name: "Retry-After beyond MaxRetryAfter ends at once", errs: []error{throttled(time.Minute)}, wantTries: 1, wantErr: &RetryAfterError{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tries := 0
			start := time.Now()
			err := fast.Do(context.Background(), func(context.Context) error {
				tries++
				if tries <= len(tt.errs) {
					return tt.errs[tries-1]
				}
				return nil
			}, nil)
			var ra *RetryAfterError
			switch want := tt.wantErr.(type) {
			case *RetryAfterError:
				if !errors.As(err, &ra) {
					t.Errorf("got %v, want a RetryAfterError", err)
				}
			default:
				if !errors.Is(err, want) {
					t.Errorf("got %v, want %v", err, want)
				}
			}
			if tries != tt.wantTries {
				t.Errorf("got %d tries, want %d", tries, tt.wantTries)
			}
			if el := time.Since(start); el < tt.minElapsed {
				t.Errorf("returned after %s, want at least %s (Retry-After)", el, tt.minElapsed)
			}
		})
	}
}
