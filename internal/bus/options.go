package bus

import (
	"fmt"
	"log/slog"
)

// Option changes what Open connects to or starts.
type Option func(*options) error

type options struct {
	url         string
	credentials string
	storeDir    string
	replicas    int
	name        string
	log         *slog.Logger
	noSync      bool
}

func newOptions(opts []Option) (options, error) {
	o := options{
		replicas: AutoReplicas,
		name:     "promoter",
		log:      slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return options{}, err
		}
	}
	if o.replicas > 1 && o.url == "" {
		return options{}, fmt.Errorf("%w: %d replicas need an external JetStream cluster (nats.url); the embedded server is a single node", ErrReplicas, o.replicas)
	}
	return o, nil
}

// WithURL is the NATS servers to connect to (nats.url), comma-separated. The default,
// empty, starts an embedded server storing in WithStoreDir's directory.
func WithURL(url string) Option {
	return func(o *options) error { o.url = url; return nil }
}

// WithCredentials is a .creds file for WithURL's servers (nats.credentials); the default,
// empty, connects without.
func WithCredentials(path string) Option {
	return func(o *options) error { o.credentials = path; return nil }
}

// WithStoreDir is the embedded server's JetStream directory. It has no default: without
// WithURL, Open fails unless it is set.
func WithStoreDir(dir string) Option {
	return func(o *options) error { o.storeDir = dir; return nil }
}

// WithReplicas is the replica count of the streams and the KV bucket (nats.replicas). The
// default, AutoReplicas, means 1 on the embedded server and ClusterReplicas on an external
// one, falling back to 1 with a warning when that server is a single non-clustered node.
// An explicit value is applied as given, also to streams that exist with another count;
// when the servers cannot place it, the bus stays not ready with an error wrapping
// ErrReplicas. More than 1 needs WithURL: the embedded server is a single node.
func WithReplicas(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("nats replicas: got %d, want %d (auto) or more", n, AutoReplicas)
		}
		o.replicas = n
		return nil
	}
}

// WithName identifies this client to the server; the default, also used for an empty
// name, is "promoter".
func WithName(name string) Option {
	return func(o *options) error {
		if name != "" {
			o.name = name
		}
		return nil
	}
}

// WithLogger sets the logger; the default, also used for nil, discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l != nil {
			o.log = l
		}
		return nil
	}
}

// withNoSync runs the embedded server with the nats-server default (fsync every two
// minutes) instead of SyncAlways, the default. Only the benchmarks that measure the cost
// set it.
func withNoSync(noSync bool) Option {
	return func(o *options) error { o.noSync = noSync; return nil }
}
