package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/promoter-dev/promoter/internal/backoff"
)

// Bus is a JetStream connection with promoter's streams and KV bucket.
type Bus struct {
	conn *nats.Conn
	js   jetstream.JetStream

	opts    options
	log     *slog.Logger
	server  *server.Server
	ensured atomic.Bool
	lastErr atomic.Pointer[error]
	// batches is set once the events stream allows atomic batches (groupcommit.go).
	batches atomic.Bool
	commit  *committer

	mu  sync.Mutex
	kv  jetstream.KeyValue
	bgc context.CancelFunc
	bgw sync.WaitGroup
}

// Open connects to NATS (or starts the embedded server) and creates the streams and KV
// bucket. When the server cannot be reached it keeps trying in the background, forever,
// and Ready reports the truth; Open itself fails only on configuration errors.
func Open(ctx context.Context, opts ...Option) (*Bus, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	b := &Bus{opts: o, log: o.log}
	natsOpts := []nats.Option{
		nats.Name(o.name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // our own Close or Drain
			}
			b.log.Warn("nats disconnected, reconnecting", "error", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			b.log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
	}
	url := o.url
	if url == "" {
		ns, err := startEmbedded(o)
		if err != nil {
			return nil, err
		}
		b.server = ns
		natsOpts = append(natsOpts, nats.InProcessServer(ns))
		url = ns.ClientURL()
		b.log.Info("started embedded nats-server", "store_dir", o.storeDir)
	}
	if o.credentials != "" {
		natsOpts = append(natsOpts, nats.UserCredentials(o.credentials))
	}
	nc, err := nats.Connect(url, natsOpts...)
	if err != nil {
		b.shutdownServer()
		return nil, fmt.Errorf("connecting to nats %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		b.shutdownServer()
		return nil, fmt.Errorf("opening jetstream: %w", err)
	}
	b.conn, b.js = nc, js
	bg, cancel := context.WithCancel(context.Background())
	b.bgc = cancel
	b.commit = newCommitter(b)
	b.bgw.Go(func() { b.commit.run(bg) })
	if err := b.ensure(ctx); err != nil {
		b.log.Warn("nats streams not ready yet, retrying in the background", "error", err)
		b.bgw.Add(1)
		go b.ensureLoop(bg)
	}
	return b, nil
}

func startEmbedded(o options) (*server.Server, error) {
	so, err := embeddedOptions(o)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("starting embedded nats-server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats-server in %s did not start within 30s", o.storeDir)
	}
	return ns, nil
}

// embeddedOptions is the embedded server's configuration. SyncAlways makes the file store
// write and fsync each message before the server acknowledges it (nats-server's default
// fsyncs every two minutes, so a power loss would drop that much acknowledged data). The
// store does not group-commit single publishes: concurrent publishes to a stream each pay
// one fsync, which is why Publish batches them (groupcommit.go).
func embeddedOptions(o options) (*server.Options, error) {
	if o.storeDir == "" {
		return nil, errors.New("embedded nats: a store directory is required")
	}
	so := &server.Options{
		ServerName: "promoter-embedded",
		JetStream:  true,
		StoreDir:   o.storeDir,
		SyncAlways: !o.noSync,
		NoSigs:     true,
		NoLog:      true,
		DontListen: true, // in-process only: builder agents in other processes need nats.url
	}
	return so, nil
}

// ensure creates or updates the streams and the KV bucket; it is idempotent. With
// AutoReplicas on an external server it asks for ClusterReplicas and falls back to 1 only
// when the server says it is not clustered.
func (b *Bus) ensure(ctx context.Context) error {
	ctx, cancel := defaultTimeout(ctx, 10*time.Second)
	defer cancel()
	replicas := b.opts.replicas
	auto := replicas == AutoReplicas
	if auto {
		replicas = 1
		if b.server == nil {
			replicas = ClusterReplicas
		}
	}
	err := b.ensureReplicas(ctx, replicas)
	if err != nil && auto && replicas > 1 && isNotClustered(err) {
		b.log.Warn("the NATS server is not clustered: streams and KV are R1, so a 2xx means one server holds the event, fsynced only as often as its jetstream sync setting says; "+
			"point nats.url at a JetStream cluster of 3 for quorum acknowledgements, or set nats.replicas: 1 to accept this",
			"url", b.conn.ConnectedUrlRedacted())
		replicas = 1
		err = b.ensureReplicas(ctx, replicas)
	}
	if err != nil {
		err = replicasHint(err, replicas, b.opts.replicas)
		b.lastErr.Store(&err)
		return err
	}
	b.lastErr.Store(nil)
	return nil
}

func (b *Bus) ensureReplicas(ctx context.Context, replicas int) error {
	for _, cfg := range streamConfigs(replicas) {
		st, err := b.js.CreateOrUpdateStream(ctx, cfg)
		if err != nil {
			return fmt.Errorf("creating stream %s: %w", cfg.Name, err)
		}
		if cfg.Name == StreamEvents {
			// A server older than 2.12 ignores the setting it does not know; it would store
			// a batch's messages without acknowledging them, so batches are used only when
			// the server says the stream allows them.
			b.batches.Store(st.CachedInfo().Config.AllowAtomicPublish)
		}
	}
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, revisionsConfig(replicas))
	if err != nil {
		return fmt.Errorf("creating KV bucket %s: %w", BucketRevisions, err)
	}
	b.mu.Lock()
	b.kv = kv
	b.mu.Unlock()
	b.ensured.Store(true)
	return nil
}

func (b *Bus) ensureLoop(ctx context.Context) {
	defer b.bgw.Done()
	policy := backoff.Policy{Min: 500 * time.Millisecond, Max: 15 * time.Second, Jitter: true}
	for try := 0; ; try++ {
		wait := policy.Delay(try)
		if backoff.Sleep(ctx, wait) != nil {
			return
		}
		err := b.ensure(ctx)
		if err == nil {
			b.log.Info("nats streams ready")
			return
		}
		b.log.Warn("nats streams not ready", "error", err, "retry_in", policy.Delay(try+1))
	}
}

// Ready returns nil when the connection is up and the streams exist, checked against the
// server, not from memory.
func (b *Bus) Ready(ctx context.Context) error {
	if !b.conn.IsConnected() {
		return fmt.Errorf("%w: nats %s", ErrNotReady, b.conn.Status())
	}
	if !b.ensured.Load() {
		if p := b.lastErr.Load(); p != nil {
			return fmt.Errorf("%w: streams not created yet: %w", ErrNotReady, *p)
		}
		return fmt.Errorf("%w: streams not created yet", ErrNotReady)
	}
	ctx, cancel := defaultTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := b.js.Stream(ctx, StreamEvents); err != nil {
		return fmt.Errorf("%w: stream %s: %v", ErrNotReady, StreamEvents, err)
	}
	return nil
}

// WaitReady blocks until Ready returns nil or ctx ends.
func (b *Bus) WaitReady(ctx context.Context) error {
	for {
		err := b.Ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for nats: %w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Revisions is the KV bucket of revision state; it fails until the bus is ready.
func (b *Bus) Revisions() (jetstream.KeyValue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kv == nil {
		return nil, fmt.Errorf("%w: KV bucket %s not created yet", ErrNotReady, BucketRevisions)
	}
	return b.kv, nil
}

// Publish stores v as JSON on subject with msgID as its Nats-Msg-Id, and returns once the
// stream acknowledged it. duplicate is true when the stream already had that id. Publishes
// to the events stream that wait at the same time share one fsync (groupcommit.go).
func (b *Bus) Publish(ctx context.Context, subject, msgID string, v any) (duplicate bool, err error) {
	data, err := json.Marshal(v)
	if err != nil {
		return false, fmt.Errorf("encoding message for %s: %w", subject, err)
	}
	if b.batchable(subject) {
		ctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		return b.commit.publish(ctx, subject, msgID, data)
	}
	return b.publishOne(ctx, subject, msgID, data)
}

// PublishAll stores every message as Publish does, and returns once the stream
// acknowledged all of them; duplicates[i] is true when the stream already had msgs[i]'s
// id. Messages to the events stream go to the group commit together (groupcommit.go), so
// the events of one webhook request are stored as atomic batches, each fsynced once,
// rather than one by one. It fails when any message was not acknowledged, and gives up
// once none was for waitTimeout, however many are left; some may be stored then, and
// publishing them all again is safe: each is de-duplicated by its id.
func (b *Bus) PublishAll(ctx context.Context, msgs []Message) (duplicates []bool, err error) {
	ps := make([]*pending, len(msgs))
	grouped := true
	for i, m := range msgs {
		data, err := json.Marshal(m.Value)
		if err != nil {
			return nil, fmt.Errorf("encoding message %s for %s: %w", m.MsgID, m.Subject, err)
		}
		ps[i] = &pending{subject: m.Subject, id: m.MsgID, data: data, done: make(chan result, 1)}
		grouped = grouped && b.batchable(m.Subject)
	}
	if grouped {
		return b.commit.publishAll(ctx, ps)
	}
	return b.publishEach(ctx, ps)
}

// Close drains the connection (in-flight messages are delivered and acknowledged) and
// stops the embedded server.
func (b *Bus) Close() error {
	b.bgc()
	b.bgw.Wait()
	var err error
	if b.conn != nil && !b.conn.IsClosed() {
		done := make(chan struct{})
		b.conn.SetClosedHandler(func(*nats.Conn) { close(done) })
		if err = b.conn.Drain(); err == nil {
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				b.conn.Close()
			}
		}
	}
	b.shutdownServer()
	return err
}

func (b *Bus) shutdownServer() {
	if b.server != nil {
		b.server.Shutdown()
		b.server.WaitForShutdown()
	}
}

// publishTimeout bounds one publish even under a longer caller deadline: an ack lost to a
// leader change never comes, and failing soon lets the caller retry (a webhook sender, or
// the bus redelivering the handler's message) instead of waiting out its whole deadline.
const publishTimeout = 10 * time.Second

// defaultTimeout adds a timeout only when the caller set no deadline.
func defaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}
