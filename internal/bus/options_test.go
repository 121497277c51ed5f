package bus

import (
	"context"
	"errors"
	"testing"
)

func TestOpenRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    []Option
		wantErr error // nil: any error
	}{
		{name: "negative replicas", opts: []Option{WithURL("nats://127.0.0.1:1"), WithReplicas(-1)}},
		{name: "more than one replica on the embedded server", opts: []Option{WithStoreDir(t.TempDir()), WithReplicas(3)}, wantErr: ErrReplicas},
		{name: "embedded server without a store directory", opts: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Open(context.Background(), tt.opts...)
			if err == nil {
				b.Close()
				t.Fatal("got no error, want one")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestOptionDefaults(t *testing.T) {
	tests := []struct {
		name         string
		opts         []Option
		wantName     string
		wantReplicas int
	}{
		{name: "none", wantName: "promoter", wantReplicas: AutoReplicas},
		{name: "empty name and nil logger keep the defaults", opts: []Option{WithName(""), WithLogger(nil)}, wantName: "promoter", wantReplicas: AutoReplicas},
		{name: "set", opts: []Option{WithURL("nats://a"), WithName("promoter-daemon"), WithReplicas(3)}, wantName: "promoter-daemon", wantReplicas: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := newOptions(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if o.name != tt.wantName || o.replicas != tt.wantReplicas || o.log == nil || o.noSync {
				t.Errorf("got name %q, replicas %d, logger set %v, noSync %v; want %q, %d, true, false",
					o.name, o.replicas, o.log != nil, o.noSync, tt.wantName, tt.wantReplicas)
			}
		})
	}
}
