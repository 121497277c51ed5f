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
		wantErr error
	}{
		{name: "git sha-1", rev: "3f2c1a9d4e5b6a7c8d9e0f1a2b3c4d5e6f7a8b9c"},
		{name: "git sha-256", rev: strings.Repeat("ab", 32)},
		{name: "short sha", rev: "3f2c1a9"},
		{name: "version", rev: "v1.2.3"},
		{name: "underscore and dash", rev: "_build-7"},
		{name: "longest", rev: strings.Repeat("a", MaxRevisionLen)},
		{name: "one too long", rev: strings.Repeat("a", MaxRevisionLen+1), wantErr: ErrInvalidRevision},
		{name: "300 characters", rev: strings.Repeat("a", 300), wantErr: ErrInvalidRevision},
		{name: "empty", rev: "", wantErr: ErrInvalidRevision},
		{name: "leading dot", rev: ".hidden", wantErr: ErrInvalidRevision},
		{name: "leading dash", rev: "-x", wantErr: ErrInvalidRevision},
		{name: "slash", rev: "feature/x", wantErr: ErrInvalidRevision},
		{name: "colon", rev: "a:b", wantErr: ErrInvalidRevision},
		{name: "space", rev: "a b", wantErr: ErrInvalidRevision},
		{name: "NATS wildcard", rev: "a*", wantErr: ErrInvalidRevision},
		{name: "empty key token", rev: "a..b", wantErr: ErrInvalidRevision},
		{name: "trailing dot", rev: "a.", wantErr: ErrInvalidRevision},
		{name: "non-ASCII", rev: "café", wantErr: ErrInvalidRevision},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateRevision(tt.rev)
			if !errors.Is(err, tt.wantErr) || (err != nil && tt.wantErr == nil) {
				t.Fatalf("ValidateRevision(%q) = %v, want %v", tt.rev, err, tt.wantErr)
			}
		})
	}
}
