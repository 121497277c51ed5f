package builders

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	ggcrtypes "github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

// SourceDir is where the Local executor puts the source tree in the image.
const SourceDir = "/src"

// Epoch is the creation time of everything the Local executor writes: the image config,
// its history and every file in the layer. A fixed time (the Unix epoch, as
// SOURCE_DATE_EPOCH=0 and ko use) makes the same source, base and platform give the same
// digest on every machine and every retry, which is what lets a redelivered request or a
// second replica push an identical arch tag instead of a conflicting one. The revision's
// commit time would do too, but no event carries it reliably.
var Epoch = time.Unix(0, 0).UTC()

// Local builds in-process, without privileges or a container runtime: the image of a
// platform is the pipeline's base image for that platform (scratch when none) plus one
// layer holding the source tree (build.dir) under /src. It does not run the Dockerfile.
// It is for development, the all-in-one mode and tests.
type Local struct {
	reg    registry.Client
	builds map[string]types.BuildSpec
	log    *slog.Logger
}

// NewLocal builds the pipelines whose build executor is local; requests for other
// pipelines fail permanently.
func NewLocal(reg registry.Client, pipelines []types.Pipeline, opts ...Option) (*Local, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	l := &Local{reg: reg, builds: map[string]types.BuildSpec{}, log: o.log}
	for _, p := range pipelines {
		if p.Build.Executor == types.ExecutorLocal {
			if p.Build.Dir == "" {
				return nil, fmt.Errorf("pipeline %s: the local executor needs build.dir", p.Name)
			}
			l.builds[p.Name] = p.Build
		}
	}
	return l, nil
}

// Build implements Executor; the job it returns is "local@<digest>" of the pushed image.
func (l *Local) Build(ctx context.Context, req types.BuildRequest, attempt int) (Built, error) {
	b, ok := l.builds[req.Pipeline]
	if !ok {
		return Built{}, fmt.Errorf("%w: %w: %q has no local build on this agent", bus.ErrPermanent, ErrUnknownPipeline, req.Pipeline)
	}
	img, err := l.image(ctx, req, b)
	if err != nil {
		return Built{}, err
	}
	ref, err := l.reg.ParseReference(req.Image)
	if err != nil {
		return Built{}, fmt.Errorf("%w: %w", bus.ErrPermanent, err)
	}
	if err := remote.Write(ref, img, l.reg.Remote(ctx)...); err != nil {
		return Built{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return Built{}, err
	}
	l.log.Info("pushed local build", "image", req.Image, "digest", d.String(), "platform", req.Platform.String(), "attempt", attempt)
	return Built{Job: "local@" + d.String(), Digest: d.String()}, nil
}

// Image builds the image of req from the source tree in dir on base (empty for scratch),
// without pushing it.
func (l *Local) image(ctx context.Context, req types.BuildRequest, b types.BuildSpec) (v1.Image, error) {
	base, err := l.base(ctx, b.Base, req.Platform)
	if err != nil {
		return nil, err
	}
	mt, err := base.MediaType()
	if err != nil {
		return nil, fmt.Errorf("reading base %s: %w", b.Base, err)
	}
	layerType := ggcrtypes.OCILayer
	if mt == ggcrtypes.DockerManifestSchema2 {
		layerType = ggcrtypes.DockerLayer
	}
	tarData, err := sourceTar(b.Dir, SourceDir)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarData)), nil
	}, tarball.WithMediaType(layerType))
	if err != nil {
		return nil, fmt.Errorf("making layer of %s: %w", b.Dir, err)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: Epoch},
			CreatedBy: "promoter local executor: COPY " + b.Dir + " " + SourceDir,
			Comment:   "revision " + req.Revision,
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = req.Platform.OS, req.Platform.Architecture, req.Platform.Variant
	cf.Created = v1.Time{Time: Epoch}
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	cf.Config.Labels["org.opencontainers.image.revision"] = req.Revision
	if req.SourceRepo != "" {
		cf.Config.Labels["org.opencontainers.image.source"] = req.SourceRepo
	}
	if cf.Config.WorkingDir == "" {
		cf.Config.WorkingDir = SourceDir
	}
	return mutate.ConfigFile(img, cf)
}

// base is the base image for platform p: scratch (an empty OCI image) when ref is empty,
// else the platform's image pulled from the registry (its child when ref is an index).
func (l *Local) base(ctx context.Context, ref string, p types.Platform) (v1.Image, error) {
	if ref == "" {
		img := mutate.MediaType(empty.Image, ggcrtypes.OCIManifestSchema1)
		return mutate.ConfigMediaType(img, ggcrtypes.OCIConfigJSON), nil
	}
	r, err := l.reg.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: build.base: %w", bus.ErrPermanent, err)
	}
	want := v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
	img, err := remote.Image(r, append(l.reg.Remote(ctx), remote.WithPlatform(want))...)
	if err != nil {
		return nil, fmt.Errorf("pulling base image %s for %s: %w", r, p, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config of base image %s: %w", r, err)
	}
	got := types.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	if !p.Matches(got) {
		return nil, fmt.Errorf("%w: base image %s is %s, not %s: use an index with a %s child", bus.ErrPermanent, r, got, p, p)
	}
	return img, nil
}
