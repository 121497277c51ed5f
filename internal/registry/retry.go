package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/promoter-dev/promoter/internal/backoff"
)

// RetryPolicy says which registry requests are tried again and how long to wait in between.
// The zero value of a field means its default (see DefaultRetryPolicy).
type RetryPolicy struct {
	// MaxAttempts bounds the tries of one request, the first included. Default 6; 1 disables
	// retries.
	MaxAttempts int
	// MinBackoff is the wait before the first retry. Default 200ms.
	MinBackoff time.Duration
	// MaxBackoff caps the exponential wait. Default 10s.
	MaxBackoff time.Duration
	// MaxRetryAfter caps how long a server may make us wait with Retry-After. Default 60s. A
	// longer Retry-After, or one beyond the context's deadline, ends the retries at once:
	// sleeping into a certain failure helps nobody.
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy is what Client uses when its Retry field is nil: 6 attempts, waits
// doubling from 200ms up to 10s with jitter, Retry-After honoured up to 60s.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 6, MinBackoff: 200 * time.Millisecond, MaxBackoff: 10 * time.Second, MaxRetryAfter: time.Minute}
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy()
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.MinBackoff <= 0 {
		p.MinBackoff = d.MinBackoff
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = d.MaxBackoff
	}
	if p.MaxBackoff < p.MinBackoff {
		p.MaxBackoff = p.MinBackoff
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = d.MaxRetryAfter
	}
	return p
}

// Backoff is the wait before retry number attempt+1 (attempt counts from 0): exponential
// from MinBackoff, capped at MaxBackoff, with "equal jitter" (half fixed, half random) so
// that many clients failing together do not come back together.
func (p RetryPolicy) Backoff(attempt int) time.Duration {
	p = p.withDefaults()
	return backoff.Policy{Min: p.MinBackoff, Max: p.MaxBackoff, Jitter: true}.Delay(attempt)
}

// Delay is how long to wait before retry number attempt+1 after resp (which may be nil):
// the server's Retry-After when it sent one, else Backoff. ok is false when the wait is not
// worth it: Retry-After beyond MaxRetryAfter or beyond ctx's deadline.
func (p RetryPolicy) Delay(ctx context.Context, attempt int, resp *http.Response) (wait time.Duration, ok bool) {
	p = p.withDefaults()
	wait = p.Backoff(attempt)
	if resp != nil {
		if ra, has := RetryAfter(resp, time.Now()); has {
			if ra > p.MaxRetryAfter {
				return ra, false
			}
			wait = ra
		}
	}
	return p.fits(ctx, wait)
}

// RetryableStatus reports whether a response status is worth another try: 408, 429 and
// the 5xx family except 501 and 505, which will not change.
func RetryableStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return true
	case code == http.StatusNotImplemented, code == http.StatusHTTPVersionNotSupported:
		return false
	default:
		return code >= 500 && code <= 599
	}
}

// RetryableError reports whether a transport error is a network flake worth another try:
// connection reset or refused, a broken pipe, a connection closed mid-response, a network
// timeout. Context cancellation and deadline are never retryable.
func RetryableError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// RetryAfter parses a Retry-After header (seconds or an HTTP date) relative to now.
func RetryAfter(resp *http.Response, now time.Time) (time.Duration, bool) {
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// RetryAfterError is a registry's refusal that asked, with Retry-After, to come back
// later: the last retryable response of a request the transport gave up on, or a refusal
// CheckError read. A caller that schedules its own retry of the whole operation (a blob
// transfer, the daemon's steps) honours the wait through RetryAfter. It is the one error
// that carries a Retry-After; Err is the registry's answer (a *transport.Error, so IsStatus
// sees its status).
type RetryAfterError struct {
	Method string
	URL    string
	Status string
	After  time.Duration
	Err    error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%s %s: %s, and the registry asks to retry after %s", e.Method, e.URL, e.Status, e.After)
}

// RetryAfter is how long the registry asked to wait.
func (e *RetryAfterError) RetryAfter() time.Duration { return e.After }

func (e *RetryAfterError) Unwrap() error { return e.Err }

// CheckError is transport.CheckError keeping a refusal's Retry-After: a response with a
// status outside codes is an error, a *RetryAfterError when the registry asked to wait.
// The caller still closes resp.Body.
func CheckError(resp *http.Response, codes ...int) error {
	err := transport.CheckError(resp, codes...)
	if err == nil {
		return nil
	}
	after, ok := RetryAfter(resp, time.Now())
	if !ok {
		return err
	}
	return newRetryAfterError(resp, after, err)
}

func newRetryAfterError(resp *http.Response, after time.Duration, err error) *RetryAfterError {
	e := &RetryAfterError{Status: resp.Status, After: after, Err: err}
	if resp.Request != nil {
		e.Method = resp.Request.Method
		if resp.Request.URL != nil {
			e.URL = resp.Request.URL.Redacted()
		}
	}
	return e
}

// giveUp ends the retries of a request: a last response with Retry-After becomes a
// RetryAfterError, anything else is passed through as it is.
func giveUp(resp *http.Response, err error) (*http.Response, error) {
	if resp == nil {
		return nil, err
	}
	after, ok := RetryAfter(resp, time.Now())
	if !ok {
		return resp, err
	}
	// The registry's answer, read from at most 4 KiB of its body, is the error's cause.
	body := resp.Body
	resp.Body = io.NopCloser(io.LimitReader(body, 4096))
	cause := transport.CheckError(resp)
	body.Close()
	return nil, newRetryAfterError(resp, after, cause)
}

// Transient reports whether an operation that failed with err is worth starting over:
// anything but a definitive refusal (a status RetryableStatus rejects) and the end of the
// context. Broken streams surface as a mix of read and write errors that no single
// predicate recognises, so an operation that restarts cheaply retries them all.
func Transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		return RetryableStatus(terr.StatusCode)
	}
	return true
}

// Do runs op, a whole operation the retrying transport cannot replay (a streamed upload
// must start over with a new session), until it succeeds, fails for good (Transient), or
// p gives up: MaxAttempts tries, waiting Backoff or the Retry-After the error carries
// (RetryAfterError), never beyond MaxRetryAfter or ctx's deadline. It returns op's last
// error, joined with ctx's when ctx ended during a wait. retrying, when set, hears of each retry before its wait (for a debug line).
func (p RetryPolicy) Do(ctx context.Context, op func(ctx context.Context) error, retrying func(attempt int, wait time.Duration, err error)) error {
	p = p.withDefaults()
	for attempt := 0; ; attempt++ {
		err := op(ctx)
		if err == nil || ctx.Err() != nil || !Transient(err) || attempt+1 >= p.MaxAttempts {
			return err
		}
		wait, ok := p.delayAfter(ctx, attempt, err)
		if !ok {
			return err
		}
		if retrying != nil {
			retrying(attempt+1, wait, err)
		}
		if serr := backoff.Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("waiting %s to retry after %w: %w", wait, err, serr)
		}
	}
}

// delayAfter is Delay for an operation that failed with err: the Retry-After err carries,
// else Backoff.
func (p RetryPolicy) delayAfter(ctx context.Context, attempt int, err error) (time.Duration, bool) {
	var ra *RetryAfterError
	if !errors.As(err, &ra) {
		return p.fits(ctx, p.Backoff(attempt))
	}
	if ra.After > p.MaxRetryAfter {
		return ra.After, false
	}
	return p.fits(ctx, ra.After)
}

// fits says whether waiting wait leaves ctx time to try again.
func (p RetryPolicy) fits(ctx context.Context, wait time.Duration) (time.Duration, bool) {
	if dl, has := ctx.Deadline(); has && time.Until(dl) < wait {
		return wait, false
	}
	return wait, true
}

// NewRetryTransport wraps base so that a request failing with a retryable status or network
// error is sent again under policy p. A request with a body is retried only when it can be
// replayed (GetBody set, as http.NewRequest does for in-memory bodies); a streamed upload
// fails through to its caller, which must restart the upload from the beginning.
func NewRetryTransport(base http.RoundTripper, p RetryPolicy) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &retryTransport{base: base, policy: p.withDefaults()}
}

type retryTransport struct {
	base   http.RoundTripper
	policy RetryPolicy
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	for attempt := 0; ; attempt++ {
		r := req
		if attempt > 0 && req.Body != nil && req.Body != http.NoBody {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r = req.Clone(ctx)
			r.Body = body
		}
		resp, err := t.base.RoundTrip(r)
		switch {
		case err != nil && !RetryableError(err):
			return nil, err
		case err == nil && !RetryableStatus(resp.StatusCode):
			return resp, nil
		}
		if !replayable || attempt+1 >= t.policy.MaxAttempts || ctx.Err() != nil {
			return giveUp(resp, err)
		}
		wait, ok := t.policy.Delay(ctx, attempt, resp)
		if !ok {
			return giveUp(resp, err)
		}
		if resp != nil {
			// Drain a little so the connection can be reused, then let it go.
			_, _ = io.CopyN(io.Discard, resp.Body, 4096)
			resp.Body.Close()
		}
		if err := backoff.Sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}
