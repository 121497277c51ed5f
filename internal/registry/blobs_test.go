package registry_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestBlobs: a blob uploaded in one session is there and reads back whole; another
// repository of the registry mounts it; a wrong digest or a wrong size is refused.
func TestBlobs(t *testing.T) {
	reg := testenv.StartRegistry(t)
	ctx := context.Background()
	c := registry.Client{}
	repo := func(path string) *registry.Blobs {
		t.Helper()
		r, err := c.ParseRepository(reg.Host + "/" + path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.Blobs(ctx, r, registry.PushScopes(r, r)...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	layer, err := random.Layer(4096, "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := layer.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(raw)
	d, _ := layer.Digest()
	desc := v1.Descriptor{Digest: d, Size: int64(len(data))}

	src := repo("staging/app")
	if ok, err := src.Exists(ctx, d); err != nil || ok {
		t.Fatalf("Exists before upload: %v, %v; want false", ok, err)
	}
	loc, mounted, err := src.StartUpload(ctx, d, "")
	if err != nil || mounted {
		t.Fatalf("StartUpload: mounted %v, %v", mounted, err)
	}
	if err := src.PutUpload(ctx, loc, desc, bytes.NewReader(data)); err != nil {
		t.Fatalf("PutUpload: %v", err)
	}
	if ok, err := src.Exists(ctx, d); err != nil || !ok {
		t.Fatalf("Exists after upload: %v, %v; want true", ok, err)
	}
	body, err := src.Get(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(body)
	body.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("Get read %d bytes, %v; want the %d uploaded", len(got), err, len(data))
	}

	if _, mounted, err := repo("prod/app").StartUpload(ctx, d, "staging/app"); err != nil || !mounted {
		t.Errorf("StartUpload with a mount: mounted %v, %v; want mounted", mounted, err)
	}

	tests := []struct {
		name       string
		run        func() error
		wantStatus int // 0: any error
	}{
		{name: "wrong digest refused by the registry", wantStatus: http.StatusBadRequest, run: func() error {
			loc, _, err := src.StartUpload(ctx, d, "")
			if err != nil {
				return err
			}
			return src.PutUpload(ctx, loc, desc, bytes.NewReader(append([]byte("x"), data[1:]...)))
		}},
		{name: "size other than the descriptor's refused", run: func() error {
			_, err := src.Get(ctx, v1.Descriptor{Digest: d, Size: desc.Size + 1})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if err == nil {
				t.Fatal("got no error")
			}
			if tt.wantStatus != 0 && !registry.IsStatus(err, tt.wantStatus) {
				t.Errorf("got %v, want status %d", err, tt.wantStatus)
			}
		})
	}
}
