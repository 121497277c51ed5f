package bustest

import (
	"context"
	"sync"
)

// Message is one message a Recorder stored.
type Message struct {
	Subject string
	MsgID   string
	Value   any
}

// Recorder is a bus.Publisher for tests of a component at the bus boundary: it records
// every message, de-duplicates by message id as JetStream does (a repeated id is answered
// as a duplicate and not stored), and fails every call while Fail has set an error. The
// zero value is ready to use.
type Recorder struct {
	mu       sync.Mutex
	calls    int
	seen     map[string]bool
	stored   []Message
	failWith error
}

// Publish implements bus.Publisher.
func (r *Recorder) Publish(_ context.Context, subject, msgID string, v any) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.failWith != nil {
		return false, r.failWith
	}
	if r.seen[msgID] {
		return true, nil
	}
	r.markLocked(msgID)
	r.stored = append(r.stored, Message{Subject: subject, MsgID: msgID, Value: v})
	return false, nil
}

// Saw makes msgID a duplicate from now on, as if another publisher had stored it.
func (r *Recorder) Saw(msgID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.markLocked(msgID)
}

func (r *Recorder) markLocked(msgID string) {
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	r.seen[msgID] = true
}

// Fail makes every Publish fail with err from now on; nil ends it.
func (r *Recorder) Fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failWith = err
}

// Snapshot is the number of Publish calls so far and the messages stored, in order.
func (r *Recorder) Snapshot() (calls int, stored []Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, append([]Message(nil), r.stored...)
}
