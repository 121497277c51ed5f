package types

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateRevision(t *testing.T) {
	for _, tt := range []struct {
		name    string
		rev     string
		wantErr bool
	}{
		{name: "git sha-1", rev: "3f2c1a9d4e5b6a7c8d9e0f1a2b3c4d5e6f7a8b9c"},
		{name: "git sha-256", rev: strings.Repeat("ab", 32)},
		{name: "short sha", rev: "3f2c1a9"},
		{name: "version", rev: "v1.2.3"},
		{name: "underscore and dash", rev: "_build-7"},
		{name: "longest", rev: strings.Repeat("a", MaxRevisionLen)},
		{name: "one too long", rev: strings.Repeat("a", MaxRevisionLen+1), wantErr: true},
		{name: "300 characters", rev: strings.Repeat("a", 300), wantErr: true},
		{name: "empty", rev: "", wantErr: true},
		{name: "leading dot", rev: ".hidden", wantErr: true},
		{name: "leading dash", rev: "-x", wantErr: true},
		{name: "slash", rev: "feature/x", wantErr: true},
		{name: "colon", rev: "a:b", wantErr: true},
		{name: "space", rev: "a b", wantErr: true},
		{name: "NATS wildcard", rev: "a*", wantErr: true},
		{name: "empty key token", rev: "a..b", wantErr: true},
		{name: "trailing dot", rev: "a.", wantErr: true},
		{name: "non-ASCII", rev: "café", wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateRevision(tt.rev)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ValidateRevision(%q) = %v, want error %v", tt.rev, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidRevision) {
				t.Errorf("got %v, want it to wrap ErrInvalidRevision", err)
			}
		})
	}
}
