package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"golang.org/x/sync/errgroup"
)

// Group commit: a 2xx means the event is fsynced (SyncAlways) or held by a quorum, and one
// fsync takes ~0.2 ms on a typical disk, so events stored one by one top out at a few
// thousand per second however many senders wait. When many publishes to the events stream
// wait at once, the committer stores them as one JetStream atomic batch instead
// (nats-server 2.12+, AllowAtomicPublish): the server writes the batch and fsyncs once, and
// acknowledges all of it or none.
//
// A batch has a fixed cost of its own (the server stages it in a store first: ~4 ms on
// this project's test machine's disk, about twenty single fsyncs), so the committer
// measures both ways and batches a round only when its messages one by one would take
// longer than one batch. On a server that fsyncs rarely (or on tmpfs) single publishes stay
// cheaper and, once measured, batches are not used.
//
// Nothing waits to fill a batch: the committer takes whatever is queued when the previous
// round ends, so one sender sees the latency of a single publish, and many senders share
// rounds. PublishAll queues all the messages of one webhook request at once, so a
// notification of thousands of events is stored in a few full batches.
const (
	// minBatch is the smallest group ever stored as an atomic batch.
	minBatch = 8
	// maxBatch bounds one batch: nats-server's default limit, so that a request of
	// thousands of events (PublishAll) costs as few batches as the server allows.
	maxBatch = 1000
	// maxSingles bounds the single publishes in flight at once.
	maxSingles = 16
)

// committer is the events stream's group commit. It runs while the bus is open.
type committer struct {
	b     *Bus
	queue chan *pending
	// singles bounds the single publishes in flight: while they are all waiting for the
	// server, new publishes queue up, and a queue long enough becomes a batch.
	singles chan struct{}
	// perMessage and perBatch are moving averages of what a message published on its own
	// and a whole batch cost; perBatch is 0 until a batch was tried.
	mu                   sync.Mutex
	perMessage, perBatch time.Duration
	// batched counts the messages stored in batches, and batchCount the batches.
	batched, batchCount atomic.Int64
	// redelivered is set while the last batch tried was refused for holding an id the
	// stream already had (commit).
	redelivered atomic.Bool
}

// pending is one publish waiting for its round.
type pending struct {
	subject, id string
	data        []byte
	done        chan result
}

type result struct {
	duplicate bool
	err       error
}

func newCommitter(b *Bus) *committer {
	return &committer{b: b, queue: make(chan *pending, 4*maxBatch), singles: make(chan struct{}, maxSingles)}
}

// publish queues one message for the next round and waits for its acknowledgement.
func (c *committer) publish(ctx context.Context, subject, id string, data []byte) (bool, error) {
	p := &pending{subject: subject, id: id, data: data, done: make(chan result, 1)}
	select {
	case c.queue <- p:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	select {
	case r := <-p.done:
		return r.duplicate, r.err
	case <-ctx.Done():
		// The round still runs; a retried publish with the same id is a duplicate.
		return false, ctx.Err()
	}
}

// publishAll queues every message, in order, and waits until all are acknowledged: the
// rounds take them up to maxBatch at a time. It fails on the first message that was not
// stored, and once no message was queued or acknowledged for waitTimeout.
func (c *committer) publishAll(ctx context.Context, ps []*pending) ([]bool, error) {
	stalled := time.NewTimer(waitTimeout)
	defer stalled.Stop()
	for _, p := range ps {
		select {
		case c.queue <- p:
			stalled.Reset(waitTimeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-stalled.C:
			return nil, fmt.Errorf("storing %d messages: %w", len(ps), errStalled)
		}
	}
	dups := make([]bool, len(ps))
	for i, p := range ps {
		select {
		case r := <-p.done:
			if r.err != nil {
				return nil, r.err
			}
			dups[i] = r.duplicate
			stalled.Reset(waitTimeout)
		case <-ctx.Done():
			// The rounds still run; messages published again are duplicates.
			return nil, ctx.Err()
		case <-stalled.C:
			return nil, fmt.Errorf("storing %d messages: %w", len(ps), errStalled)
		}
	}
	return dups, nil
}

// errStalled says no message of a PublishAll was stored for waitTimeout.
var errStalled = fmt.Errorf("no acknowledgement for %s", waitTimeout)

// publishEach stores messages that cannot go to the group commit (another stream, or a
// server without atomic batches) one by one, up to maxSingles at once, and stops at the
// first failure.
func (b *Bus) publishEach(ctx context.Context, ps []*pending) ([]bool, error) {
	dups := make([]bool, len(ps))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(maxSingles)
	for i, p := range ps {
		g.Go(func() error {
			dup, err := b.publishOne(ctx, p.subject, p.id, p.data)
			dups[i] = dup
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return dups, nil
}

// run takes rounds until ctx ends.
func (c *committer) run(ctx context.Context) {
	for {
		var round []*pending
		select {
		case p := <-c.queue:
			round = append(round, p)
		case <-ctx.Done():
			return
		}
	drain:
		for len(round) < maxBatch {
			select {
			case p := <-c.queue:
				round = append(round, p)
			default:
				break drain
			}
		}
		c.commit(round)
	}
}

// commit stores one round: as an atomic batch when that pays, else each message on its
// own, up to maxSingles at once. A batch the server refuses is published again one by one:
// one that holds an id the stream already has is refused as a whole, and one by one each
// sender learns whether its message was the duplicate. (After a batch whose
// acknowledgement was lost, a message may be reported as a duplicate of itself: it is
// stored once either way.) After such a refusal the next round's first message is
// published alone first: a duplicate again (a notification sent twice) sends the round
// one by one, without staging a batch the server would refuse.
func (c *committer) commit(round []*pending) {
	batch := c.batchPays(len(round))
	if batch && c.redelivered.Load() {
		// The last batch was refused for an id the stream had: a sender is redelivering.
		// Whether this round is more of the same costs one publish of its first message,
		// not a whole batch staged and refused.
		p := round[0]
		dup, err := c.b.publishOne(context.Background(), p.subject, p.id, p.data)
		p.done <- result{duplicate: dup, err: err}
		round = round[1:]
		stored := err == nil && !dup
		if stored {
			c.redelivered.Store(false)
		}
		batch = stored && c.batchPays(len(round))
	}
	if batch {
		start := time.Now()
		err := c.b.publishBatch(round)
		if err == nil {
			c.mu.Lock()
			c.perBatch = average(c.perBatch, time.Since(start))
			c.mu.Unlock()
			c.batched.Add(int64(len(round)))
			c.batchCount.Add(1)
			for _, p := range round {
				p.done <- result{}
			}
			return
		}
		if errors.Is(err, errBatchDuplicate) {
			c.redelivered.Store(true)
		} else {
			c.b.log.Warn("storing a batch of events failed; storing them one by one", "events", len(round), "error", err)
		}
	}
	for _, p := range round {
		c.singles <- struct{}{}
		go func() {
			defer func() { <-c.singles }()
			start := time.Now()
			dup, err := c.b.publishOne(context.Background(), p.subject, p.id, p.data)
			if err == nil && !dup {
				c.observe(time.Since(start)) // a duplicate is not stored: it says nothing of a store's cost
			}
			p.done <- result{duplicate: dup, err: err}
		}()
	}
}

// observe records what one single publish took, divided among those in flight with it:
// the server stores one message after another, so that is its share of the server's time.
func (c *committer) observe(took time.Duration) {
	share := took / time.Duration(max(len(c.singles), 1))
	c.mu.Lock()
	c.perMessage = average(c.perMessage, share)
	c.mu.Unlock()
}

// batchPays reports whether n messages are cheaper as one batch than one by one, by what
// both cost lately. While either cost is unknown a batch is tried: a round too small to be
// a batch measures single publishes.
func (c *committer) batchPays(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case n < minBatch:
		return false
	case c.perBatch == 0 || c.perMessage == 0:
		return true
	default:
		return time.Duration(n)*c.perMessage > c.perBatch
	}
}

// average moves a by one eighth towards sample; a zero a takes the sample.
func average(a, sample time.Duration) time.Duration {
	if a == 0 {
		return sample
	}
	return a + (sample-a)/8
}

// errBatchDuplicate says an atomic batch was refused because one of its ids is a duplicate
// (nats-server error 10201).
var errBatchDuplicate = errors.New("the batch holds a message id the stream already has")

// publishBatch stores msgs as one atomic batch: every message but the last is sent
// without a reply, the last one commits the batch and gets the acknowledgement of all.
func (b *Bus) publishBatch(msgs []*pending) error {
	id := nuid.Next()
	for i, p := range msgs {
		m := nats.NewMsg(p.subject)
		m.Data = p.data
		m.Header.Set(jetstream.MsgIDHeader, p.id)
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i < len(msgs)-1 {
			if err := b.conn.PublishMsg(m); err != nil {
				return fmt.Errorf("publishing a batch of %d to %s: %w", len(msgs), StreamEvents, err)
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		resp, err := b.conn.RequestMsg(m, publishTimeout)
		if err != nil {
			return fmt.Errorf("committing a batch of %d to %s: %w", len(msgs), StreamEvents, err)
		}
		var ack struct {
			Error *jetstream.APIError `json:"error"`
			Count int                 `json:"count"`
		}
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return fmt.Errorf("committing a batch of %d to %s: decoding %q: %w", len(msgs), StreamEvents, resp.Data, err)
		}
		if ack.Error != nil {
			if ack.Error.ErrorCode == batchDuplicateCode {
				return errBatchDuplicate
			}
			return fmt.Errorf("committing a batch of %d to %s: %w", len(msgs), StreamEvents, ack.Error)
		}
		if ack.Count != len(msgs) {
			return fmt.Errorf("committing a batch of %d to %s: the server stored %d", len(msgs), StreamEvents, ack.Count)
		}
	}
	return nil
}

// batchDuplicateCode is nats-server's JSAtomicPublishContainsDuplicateMessageErr.
const batchDuplicateCode = 10201

// publishOne stores one message and waits for its acknowledgement.
func (b *Bus) publishOne(ctx context.Context, subject, id string, data []byte) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	ack, err := b.js.Publish(ctx, subject, data, jetstream.WithMsgID(id))
	if err != nil {
		return false, fmt.Errorf("publishing to %s: %w", subject, err)
	}
	return ack.Duplicate, nil
}

// batchable reports whether a publish to subject may go through the group commit: the
// events stream allows atomic batches (the server is new enough and the stream was
// updated).
func (b *Bus) batchable(subject string) bool {
	return b.batches.Load() && strings.HasPrefix(subject, eventsPrefix)
}

// waitTimeout bounds how long a publish waits for its round, queueing included.
const waitTimeout = publishTimeout + 5*time.Second
