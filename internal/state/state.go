// Package state stores each revision's progress (platforms seen, index, signatures,
// promotions) in the bus's JetStream KV bucket and changes it only by compare-and-swap, so
// several daemon replicas can share the work and a restarted one resumes where it stopped.
//
// It must not decide what a change means: callers pass a function that edits the revision
// (a transition of types.Revision), and Update hands back what that function decided.
package state

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
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

// keyFilter matches the keys of pipeline's revisions, or of every revision when it is "".
func keyFilter(pipeline string) string {
	if pipeline == "" {
		return jetstream.AllKeys
	}
	return pipeline + ".>"
}

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
// other error is returned as it is. It is Update with a transition that returns nothing
// else.
func (s *Store) Update(ctx context.Context, pipeline, revision string, fn func(*types.Revision) error) (*types.Revision, error) {
	rev, _, err := Update(ctx, s, pipeline, revision, func(r *types.Revision) (struct{}, error) {
		return struct{}{}, fn(r)
	})
	return rev, err
}

// Update is Store.Update for a transition that also decides something (a violation it
// found, whether an input moved): it returns what the run of fn whose result counts
// returned (the one written, or the one that returned ErrNoChange or another error), so
// that no caller carries it out of the retry loop through a variable of its own. On an
// error of the store (reading, writing, contention) the value is T's zero value.
func Update[T any](ctx context.Context, s *Store, pipeline, revision string, fn func(*types.Revision) (T, error)) (*types.Revision, T, error) {
	var zero T
	for attempt := 0; ; attempt++ {
		cur, seq, err := s.get(ctx, pipeline, revision)
		if errors.Is(err, ErrNotFound) {
			cur = &types.Revision{Pipeline: pipeline, Revision: revision, Platforms: map[string]types.PlatformState{}}
		} else if err != nil {
			return nil, zero, err
		}
		if cur.Platforms == nil {
			cur.Platforms = map[string]types.PlatformState{}
		}
		v, err := fn(cur)
		if errors.Is(err, ErrNoChange) {
			return cur, v, nil
		}
		if err != nil {
			return cur, v, err
		}
		cur.Updated = s.now().UTC()
		data, err := json.Marshal(cur)
		if err != nil {
			return nil, zero, fmt.Errorf("encoding state of %s/%s: %w", pipeline, revision, err)
		}
		err = s.write(ctx, Key(pipeline, revision), data, seq)
		if err == nil {
			return cur, v, nil
		}
		if err := s.retryable(ctx, pipeline, revision, attempt, err); err != nil {
			return nil, zero, err
		}
	}
}

// retryable decides after a failed write whether Update tries again: only after losing
// the compare-and-swap, while ctx lasts and attempts remain, and then after a back-off.
func (s *Store) retryable(ctx context.Context, pipeline, revision string, attempt int, err error) error {
	if !isConflict(err) {
		return fmt.Errorf("writing state of %s/%s: %w", pipeline, revision, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("writing state of %s/%s: %w", pipeline, revision, err)
	}
	if attempt+1 >= maxAttempts {
		return fmt.Errorf("writing state of %s/%s: %w after %d attempts", pipeline, revision, ErrContended, maxAttempts)
	}
	// Another replica wrote first: back off a little, growing, and try again.
	if err := backoff.Sleep(ctx, casBackoff.Delay(attempt)); err != nil {
		return fmt.Errorf("writing state of %s/%s: %w", pipeline, revision, err)
	}
	return nil
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

// Order is the order Page lists revisions in.
type Order string

const (
	// ByKey lists revisions in key order: by pipeline, then revision. Its cursor is the
	// last key listed.
	ByKey Order = "key"
	// ByRecent lists the revisions written last first (the stream sequence of each one's
	// last write, so one order over every replica's writes). Its cursor is that sequence;
	// the next page holds the revisions last written before it, so a revision written
	// while a user pages moves to the first page instead of showing twice.
	ByRecent Order = "recent"
)

// ErrBadCursor is returned by Page for an After that no page of its order returned.
var ErrBadCursor = errors.New("not a cursor of this order")

// Query selects one page of revisions.
type Query struct {
	Pipeline string      // only this pipeline's revisions; "" for every pipeline
	Phase    types.Phase // only revisions in this phase; "" for every phase
	Order    Order       // ByKey when empty
	After    string      // the previous page's next cursor; "" for the first page
	Limit    int         // revisions on the page, at least 1
	// MaxRead bounds the revisions a page reads (0: no bound). A Phase filter reads
	// revisions until Limit of them match; one that reaches MaxRead first ends the page
	// there, with what matched and a cursor to go on from, so that a rare phase among
	// many revisions is found over several pages, none of which reads them all.
	MaxRead int
}

// listed is one revision's key and the stream sequence of its last write.
type listed struct {
	key string
	seq uint64
}

// Page lists one page of revisions (see Query) and the cursor of the next one, "" when
// this is the last. It lists the keys (headers only) and reads the values of this page's
// revisions only.
func (s *Store) Page(ctx context.Context, q Query) (revs []*types.Revision, next string, err error) {
	if q.Limit < 1 {
		return nil, "", fmt.Errorf("listing revision state: limit must be at least 1, got %d", q.Limit)
	}
	all, err := s.keys(ctx, q.Pipeline)
	if err != nil {
		return nil, "", err
	}
	all, cursor, err := q.order(all)
	if err != nil {
		return nil, "", err
	}
	read := 0
	for i, l := range all {
		p, rev, _ := strings.Cut(l.key, ".")
		r, err := s.Get(ctx, p, rev)
		if errors.Is(err, ErrNotFound) {
			continue // deleted since it was listed
		}
		if err != nil {
			return nil, "", err
		}
		read++
		if q.Phase == "" || r.Phase == q.Phase {
			revs = append(revs, r)
		}
		if i < len(all)-1 && (len(revs) == q.Limit || (q.MaxRead > 0 && read >= q.MaxRead)) {
			return revs, cursor(l), nil
		}
	}
	return revs, "", nil
}

// order sorts the listed revisions in the query's order, in place, and returns those
// after its cursor, and how to write a cursor.
func (q Query) order(all []listed) ([]listed, func(listed) string, error) {
	switch q.Order {
	case ByKey, "":
		slices.SortFunc(all, func(a, b listed) int { return strings.Compare(a.key, b.key) })
		i := 0
		for i < len(all) && all[i].key <= q.After {
			i++
		}
		return all[i:], func(l listed) string { return l.key }, nil
	case ByRecent:
		slices.SortFunc(all, func(a, b listed) int { return cmp.Compare(b.seq, a.seq) })
		i := 0
		if q.After != "" {
			before, err := strconv.ParseUint(q.After, 10, 64)
			if err != nil {
				return nil, nil, fmt.Errorf("listing revision state: after %q is %w (%s)", q.After, ErrBadCursor, q.Order)
			}
			for i < len(all) && all[i].seq >= before {
				i++
			}
		}
		return all[i:], func(l listed) string { return strconv.FormatUint(l.seq, 10) }, nil
	}
	return nil, nil, fmt.Errorf("listing revision state: order must be %s or %s, got %q", ByKey, ByRecent, q.Order)
}

// keys lists the key and last write of each revision, of one pipeline or all, from the
// bucket's stream: its last message per key, headers only.
func (s *Store) keys(ctx context.Context, pipeline string) ([]listed, error) {
	w, err := s.kv.Watch(ctx, keyFilter(pipeline), jetstream.MetaOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("listing revision state: %w", err)
	}
	defer w.Stop() //nolint:errcheck // the listing is over either way
	var out []listed
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("listing revision state: the bus closed the listing")
			}
			if e == nil { // every key has been sent
				return out, nil
			}
			if strings.Contains(e.Key(), ".") {
				out = append(out, listed{key: e.Key(), seq: e.Revision()})
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("listing revision state: %w", ctx.Err())
		}
	}
}

// Watch sends each revision written from now on, of pipeline (all when empty), as it is
// written by any replica, until ctx ends; the channel is closed then, or when the watch
// breaks (the bus went away), and the caller watches again. Deletions are not sent. It
// reads nothing that was written before it was called: a caller that shows state reads it
// (Page, Get) after Watch returns, so that no write falls between the two.
func (s *Store) Watch(ctx context.Context, pipeline string) (<-chan *types.Revision, error) {
	w, err := s.kv.Watch(ctx, keyFilter(pipeline), jetstream.UpdatesOnly(), jetstream.IgnoreDeletes())
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
