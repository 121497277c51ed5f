package types

import (
	"errors"
	"strings"
	"testing"
)

func TestCacheRefRenderAndTagIn(t *testing.T) {
	staging := Repository("registry.example:5000/acme/web")
	all := []Platform{MustPlatform("linux/amd64"), MustPlatform("linux/arm/v7")}
	if got, want := DefaultCacheRef.Render(staging, all[1]), "registry.example:5000/acme/web:buildcache-linux-armv7"; got != want {
		t.Errorf("Render = %q, want %q", got, want)
	}
	tests := []struct {
		ref  CacheRef
		tag  string
		want bool
	}{
		{DefaultCacheRef, "buildcache-linux-amd64", true},
		{DefaultCacheRef, "buildcache-linux-armv7", true},
		{DefaultCacheRef, "buildcache-linux-arm64", false}, // not a platform of the pipeline
		{DefaultCacheRef, "0123abc-amd64", false},
		{"{staging}/cache:{arch}", "amd64", false}, // stored in another repository
		{"", "buildcache-linux-amd64", false},      // cache off
	}
	for _, tc := range tests {
		if got := tc.ref.TagIn(staging, tc.tag, all); got != tc.want {
			t.Errorf("%q.TagIn(%q) = %v, want %v", tc.ref, tc.tag, got, tc.want)
		}
	}
	// The default cache tag fits the default arch tag: TagIn is what tells them apart.
	if _, _, ok := ArchTag(DefaultArchTag).Compile(all).Match("buildcache-linux-amd64"); !ok {
		t.Error("the default arch tag no longer matches the default cache tag; TagIn's comment is stale")
	}
}

func TestCacheRefValidate(t *testing.T) {
	staging := Repository("registry.example/acme/web")
	arm := []Platform{MustPlatform("linux/arm/v6"), MustPlatform("linux/arm/v7")}
	tests := []struct {
		ref     CacheRef
		wantErr error
		// wantMsg is what the error says to fix: the message is what the user reads.
		wantMsg string
	}{
		{DefaultCacheRef, nil, ""},
		{"registry.example/cache/web:{os}-{arch}{variant}", nil, ""},
		{"{staging}:buildcache-{arch}", ErrInvalidCacheRef, "same reference for linux/arm/v6 and linux/arm/v7"},
		{"{staging}:cache-{revision}", ErrInvalidCacheRef, "unknown placeholder {revision}"},
		{"{staging}", ErrInvalidCacheRef, "has no valid tag"},
		{"{staging}:cache/{arch}{variant}", ErrInvalidCacheRef, "has no valid tag"},
		{"cache:{arch}{variant}", ErrInvalidCacheRef, "is not a repository"},
	}
	for _, tc := range tests {
		err := tc.ref.Validate(staging, arm)
		if !errors.Is(err, tc.wantErr) || (err != nil && tc.wantErr == nil) {
			t.Errorf("Validate(%q) = %v, want %v", tc.ref, err, tc.wantErr)
		} else if err != nil && !strings.Contains(err.Error(), tc.wantMsg) {
			t.Errorf("Validate(%q) = %v, want it to say %q", tc.ref, err, tc.wantMsg)
		}
	}
}
