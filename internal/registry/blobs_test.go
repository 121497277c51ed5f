package registry_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// blobsOf is the blob API of path in reg.
func blobsOf(t *testing.T, reg *localregistry.Registry, path string) *registry.Blobs {
	t.Helper()
	c := registry.Client{}
	r, err := c.ParseRepository(reg.Host + "/" + path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Blobs(context.Background(), r, registry.PushScopes(r, r)...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// randomBlob is a random 4 KiB blob and its descriptor.
func randomBlob(t *testing.T) ([]byte, v1.Descriptor) {
	t.Helper()
	layer, err := random.Layer(4096, "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := layer.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(raw)
	if err != nil {
		t.Fatal(err)
	}
	d, err := layer.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return data, v1.Descriptor{Digest: d, Size: int64(len(data))}
}

// upload uploads data as desc in one session.
func upload(ctx context.Context, b *registry.Blobs, desc v1.Descriptor, data []byte) error {
	loc, _, err := b.StartUpload(ctx, desc.Digest, "")
	if err != nil {
		return err
	}
	return b.PutUpload(ctx, loc, desc, bytes.NewReader(data))
}

// TestBlobs: a blob uploaded in one session is there and reads back whole; another
// repository of the registry mounts it.
func TestBlobs(t *testing.T) {
	reg := testenv.StartRegistry(t)
	ctx := context.Background()
	data, desc := randomBlob(t)
	d := desc.Digest

	src := blobsOf(t, reg, "staging/app")
	if ok, err := src.Exists(ctx, d); err != nil || ok {
		t.Fatalf("Exists before upload: %v, %v; want false", ok, err)
	}
	if err := upload(ctx, src, desc, data); err != nil {
		t.Fatalf("uploading: %v", err)
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
	if _, mounted, err := blobsOf(t, reg, "prod/app").StartUpload(ctx, d, "staging/app"); err != nil || !mounted {
		t.Errorf("StartUpload with a mount: mounted %v, %v; want mounted", mounted, err)
	}
}

// TestBlobsRefuse: a wrong digest or a size other than the descriptor's is refused.
func TestBlobsRefuse(t *testing.T) {
	reg := testenv.StartRegistry(t)
	ctx := context.Background()
	data, desc := randomBlob(t)
	src := blobsOf(t, reg, "staging/app")
	if err := upload(ctx, src, desc, data); err != nil {
		t.Fatalf("uploading: %v", err)
	}
	tests := []struct {
		name       string
		run        func() error
		wantStatus int // 0: any error
	}{
		{name: "wrong digest refused by the registry", wantStatus: http.StatusBadRequest, run: func() error {
			return upload(ctx, src, desc, append([]byte("x"), data[1:]...))
		}},
		{name: "size other than the descriptor's refused", run: func() error {
			_, err := src.Get(ctx, v1.Descriptor{Digest: desc.Digest, Size: desc.Size + 1})
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
