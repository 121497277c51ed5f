// Package state stores each revision's progress (platforms seen, index, signatures,
// promotions) in the bus's JetStream KV bucket and changes it only by compare-and-swap, so
// several daemon replicas can share the work and a restarted one resumes where it stopped.
//
// It must not decide what a change means: callers pass a function that edits the revision.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/promoter-dev/promoter/internal/backoff"
	"github.com/promoter-dev/promoter/internal/types"
)

// ErrNotFound is returned by Get for a revision with no state yet.
var ErrNotFound = errors.New("revision state not found")

// ErrNoChange, returned by an update function, leaves the stored state as it is. It is
// the revision state machine's (types.ErrNoChange), so a transition can be the function.
var ErrNoChange = types.ErrNoChange

// ErrContended is returned by Update when every attempt lost the compare-and-swap: other
// writers kept winning, or reads kept answering an old revision (a lagging replica). The
// caller retries later; nothing was written.
var ErrContended = errors.New("revision state kept changing under the update")

// opTimeout bounds one read or write of the bucket even under a longer caller deadline: a
// request lost to a leader change is never answered, and the caller should retry soon.
const opTimeout = 5 * time.Second

// maxAttempts bounds the compare-and-swap attempts of one Update (about 5 s of back-off).
const maxAttempts = 100

// casBackoff spreads the writers that lost a compare-and-swap: from 5 ms up to 100 ms.
var casBackoff = backoff.Policy{Min: 5 * time.Millisecond, Max: 100 * time.Millisecond, Jitter: true}

// Store is the revision state bucket.
type Store struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// New wraps a KV bucket (bus.Bus.Revisions()).
func New(kv jetstream.KeyValue) *Store {
	return &Store{kv: kv, now: time.Now}
}

// Key is the KV key of a revision: "<pipeline>.<revision>".
func Key(pipeline, revision string) string { return pipeline + "." + revision }

// Get reads a revision's state.
func (s *Store) Get(ctx context.Context, pipeline, revision string) (*types.Revision, error) {
	r, _, err := s.get(ctx, pipeline, revision)
	return r, err
}

func (s *Store) get(ctx context.Context, pipeline, revision string) (*types.Revision, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	e, err := s.kv.Get(ctx, Key(pipeline, revision))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading state of %s/%s: %w", pipeline, revision, err)
	}
	var r types.Revision
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("decoding state of %s/%s: %w", pipeline, revision, err)
	}
	return &r, e.Revision(), nil
}

// Update applies fn to the current state (a new Revision when there is none) and writes
// the result only if nobody wrote in between; otherwise it reads again and retries. fn
// may run several times and must only edit the revision it is given. When fn returns
// ErrNoChange nothing is written and the current state is returned with a nil error; any
// other error is returned as it is.
func (s *Store) Update(ctx context.Context, pipeline, revision string, fn func(*types.Revision) error) (*types.Revision, error) {
	for attempt := 0; ; attempt++ {
		cur, seq, err := s.get(ctx, pipeline, revision)
		if errors.Is(err, ErrNotFound) {
			cur = &types.Revision{Pipeline: pipeline, Revision: revision, Platforms: map[string]types.PlatformState{}}
		} else if err != nil {
			return nil, err
		}
		if cur.Platforms == nil {
			cur.Platforms = map[string]types.PlatformState{}
		}
		if err := fn(cur); err != nil {
			if errors.Is(err, ErrNoChange) {
				return cur, nil
			}
			return cur, err
		}
		cur.Updated = s.now().UTC()
		data, err := json.Marshal(cur)
		if err != nil {
			return nil, fmt.Errorf("encoding state of %s/%s: %w", pipeline, revision, err)
		}
		err = s.write(ctx, Key(pipeline, revision), data, seq)
		if err == nil {
			return cur, nil
		}
		if !isConflict(err) {
			return nil, fmt.Errorf("writing state of %s/%s: %w", pipeline, revision, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("writing state of %s/%s: %w", pipeline, revision, err)
		}
		if attempt+1 >= maxAttempts {
			return nil, fmt.Errorf("writing state of %s/%s: %w after %d attempts", pipeline, revision, ErrContended, maxAttempts)
		}
		// Another replica wrote first: back off a little, growing, and try again.
		if err := backoff.Sleep(ctx, casBackoff.Delay(attempt)); err != nil {
			return nil, fmt.Errorf("writing state of %s/%s: %w", pipeline, revision, err)
		}
	}
}

// write creates (seq 0) or compare-and-swaps one entry, bounded by opTimeout.
func (s *Store) write(ctx context.Context, key string, data []byte, seq uint64) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	var err error
	if seq == 0 {
		_, err = s.kv.Create(ctx, key, data)
	} else {
		_, err = s.kv.Update(ctx, key, data, seq)
	}
	return err
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists)
}

// List returns every stored revision, optionally of one pipeline only.
func (s *Store) List(ctx context.Context, pipeline string) ([]*types.Revision, error) {
	lister, err := s.kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing revision state: %w", err)
	}
	defer lister.Stop()
	var out []*types.Revision
	for key := range lister.Keys() {
		p, rev, ok := strings.Cut(key, ".")
		if !ok || (pipeline != "" && p != pipeline) {
			continue
		}
		r, err := s.Get(ctx, p, rev)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Page lists at most limit revisions in key order ("<pipeline>.<revision>"), optionally of
// one pipeline, starting after the key after (a previous page's next; "" for the first).
// It lists the keys and reads the values of this page only. next is the key to continue
// after, or "" when this is the last page.
func (s *Store) Page(ctx context.Context, pipeline, after string, limit int) (revs []*types.Revision, next string, err error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("listing revision state: limit must be at least 1, got %d", limit)
	}
	var lister jetstream.KeyLister
	if pipeline != "" {
		lister, err = s.kv.ListKeysFiltered(ctx, pipeline+".>")
	} else {
		lister, err = s.kv.ListKeys(ctx)
	}
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("listing revision state: %w", err)
	}
	defer lister.Stop()
	var keys []string
	for key := range lister.Keys() {
		if key > after && strings.Contains(key, ".") {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	if len(keys) > limit {
		keys, next = keys[:limit], keys[limit-1]
	}
	for _, key := range keys {
		p, rev, _ := strings.Cut(key, ".")
		r, err := s.Get(ctx, p, rev)
		if errors.Is(err, ErrNotFound) {
			continue // deleted since it was listed
		}
		if err != nil {
			return nil, "", err
		}
		revs = append(revs, r)
	}
	return revs, next, nil
}

// Watch sends each revision written from now on, of pipeline (all when empty), as it is
// written by any replica, until ctx ends; the channel is closed then, or when the watch
// breaks (the bus went away), and the caller watches again. Deletions are not sent. It
// reads nothing that was written before it was called: a caller that shows state reads it
// (Page, Get) after Watch returns, so that no write falls between the two.
func (s *Store) Watch(ctx context.Context, pipeline string) (<-chan *types.Revision, error) {
	keys := jetstream.AllKeys
	if pipeline != "" {
		keys = pipeline + ".>"
	}
	w, err := s.kv.Watch(ctx, keys, jetstream.UpdatesOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("watching revision state: %w", err)
	}
	out := make(chan *types.Revision)
	go func() {
		defer close(out)
		defer w.Stop() //nolint:errcheck // the watch is over either way
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue // the end of the initial values, of which UpdatesOnly has none
				}
				var r types.Revision
				if json.Unmarshal(e.Value(), &r) != nil {
					continue // not a revision this version writes; Get reports it
				}
				select {
				case out <- &r:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
