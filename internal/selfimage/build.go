package selfimage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ggcrtypes "github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/promoter-dev/promoter/internal/types"
)

// DefaultSource is org.opencontainers.image.source when a Spec names none.
const DefaultSource = "https://github.com/promoter-dev/promoter"

// DefaultPlatforms are the platforms built when a Spec names none.
var DefaultPlatforms = []types.Platform{types.MustPlatform("linux/amd64"), types.MustPlatform("linux/arm64")}

// OCI annotation keys set on each manifest (and, as labels, in each config).
const (
	AnnotationSource   = "org.opencontainers.image.source"
	AnnotationRevision = "org.opencontainers.image.revision"
	AnnotationVersion  = "org.opencontainers.image.version"
	AnnotationCreated  = "org.opencontainers.image.created"
)

// ErrNoRevision is returned when the compiled binary records no commit: the module was
// not built from a git work tree, so neither `promoter version` nor the image could say
// what it was built from.
var ErrNoRevision = errors.New("the binary records no vcs.revision (build from a git work tree)")

// Spec is what to build. Only Dir and Out are required.
type Spec struct {
	// Dir is the root of the promoter module (where ./cmd/promoter is).
	Dir string
	// Out is a directory for the binaries and layer files; the images read their layers
	// from it, so it must outlive them.
	Out string
	// Platforms to build; empty means DefaultPlatforms.
	Platforms []types.Platform
	// Version is stamped into the binary (-X main.version) and the version annotation;
	// empty means `git describe --tags --always --dirty` in Dir.
	Version string
	// Source is the source repository URL; empty means DefaultSource.
	Source string
	// CABundle is the CA certificate bundle copied into the image; empty means
	// DefaultCABundle.
	CABundle string
	// Created is the time of every file, the config and the SBOM; zero means the commit
	// time from the binary's build info (a caller passes SOURCE_DATE_EPOCH here).
	Created time.Time
}

// Release is promoter's image for each platform of one build.
type Release struct {
	// Revision is the commit the binaries were built from, as `promoter version` prints
	// it (a "-dirty" suffix when the work tree had changes).
	Revision string
	Version  string
	Source   string
	Created  time.Time
	Images   []Image
}

// Image is one platform's image and its SBOM.
type Image struct {
	Platform types.Platform
	Image    v1.Image
	// SBOM is the SPDX document of the binary's Go modules.
	SBOM []byte
	// Binary is the compiled binary under Spec.Out.
	Binary string
}

// Option configures Build and Push.
type Option func(*options) error

type options struct {
	log    *slog.Logger
	remote []remote.Option
}

// WithLogger logs progress (a line per compile and push); the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("nil logger")
		}
		o.log = l
		return nil
	}
}

func newOptions(opts []Option) (options, error) {
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// Build compiles promoter for each platform of spec and assembles its images.
func Build(ctx context.Context, spec Spec, opts ...Option) (*Release, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if spec.Dir == "" || spec.Out == "" {
		return nil, errors.New("selfimage: Spec.Dir and Spec.Out are required")
	}
	if len(spec.Platforms) == 0 {
		spec.Platforms = DefaultPlatforms
	}
	if spec.Version == "" {
		spec.Version = describe(ctx, spec.Dir)
	}
	if spec.Source == "" {
		spec.Source = DefaultSource
	}
	if spec.CABundle == "" {
		spec.CABundle = DefaultCABundle
	}
	ca, err := os.ReadFile(spec.CABundle)
	if err != nil {
		return nil, fmt.Errorf("reading the CA bundle: %w", err)
	}
	rel := &Release{Version: spec.Version, Source: spec.Source, Created: spec.Created.UTC()}
	var base v1.Layer // one for every platform, once the time is known
	for _, p := range spec.Platforms {
		start := time.Now()
		bin, err := compile(ctx, spec.Dir, spec.Out, spec.Version, p)
		if err != nil {
			return nil, err
		}
		o.log.Info("compiled", "platform", p.String(), "binary", bin.path, "seconds", time.Since(start).Seconds())
		if bin.revision() == "" {
			return nil, fmt.Errorf("%s: %w", bin.path, ErrNoRevision)
		}
		switch {
		case rel.Revision == "":
			rel.Revision = bin.revision()
		case rel.Revision != bin.revision():
			return nil, fmt.Errorf("the %s binary was built from %s, the others from %s: the work tree changed during the build", p, bin.revision(), rel.Revision)
		}
		if rel.Created.IsZero() {
			rel.Created = bin.commitTime()
		}
		if rel.Version == "" {
			rel.Version = bin.info.Main.Version
		}
		if base == nil {
			if base, err = layer(filepath.Join(spec.Out, "base.tar"), baseEntries(ca), rel.Created); err != nil {
				return nil, err
			}
		}
		img, err := rel.assemble(bin, base, spec.Out)
		if err != nil {
			return nil, fmt.Errorf("assembling the %s image: %w", p, err)
		}
		rel.Images = append(rel.Images, img)
	}
	return rel, nil
}

// labels are the OCI annotations of every manifest, also set as config labels.
func (r *Release) labels() map[string]string {
	return map[string]string{
		AnnotationSource:   r.Source,
		AnnotationRevision: strings.TrimSuffix(r.Revision, "-dirty"),
		AnnotationVersion:  r.Version,
		AnnotationCreated:  r.Created.Format(time.RFC3339),
	}
}

// assemble lays bin on the base layer: two layers (base, binary), a config that runs the binary
// as 65532, the annotations; and the binary's SBOM.
func (r *Release) assemble(bin binary, base v1.Layer, out string) (Image, error) {
	name := strings.ReplaceAll(bin.platform.String(), "/", "-")
	app, err := layer(filepath.Join(out, "promoter-"+name+".tar"), binaryEntries(bin.path), r.Created)
	if err != nil {
		return Image{}, err
	}
	created := v1.Time{Time: r.Created}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, ggcrtypes.OCIManifestSchema1), ggcrtypes.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: ggcrtypes.OCILayer, History: v1.History{
			Created: created, CreatedBy: "selfimage: CA certificates, /etc/passwd and /etc/group (nonroot 65532), /tmp, /home/nonroot",
		}},
		mutate.Addendum{Layer: app, MediaType: ggcrtypes.OCILayer, History: v1.History{
			Created: created, CreatedBy: fmt.Sprintf("selfimage: CGO_ENABLED=0 GOOS=%s GOARCH=%s go build -trimpath %s -> %s", bin.platform.OS, bin.platform.Architecture, mainPackage, BinaryPath),
		}},
	)
	if err != nil {
		return Image{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Image{}, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = bin.platform.OS, bin.platform.Architecture, bin.platform.Variant
	cf.Created = created
	cf.Config = v1.Config{
		User:       fmt.Sprint(UID),
		Entrypoint: []string{BinaryPath},
		Env:        []string{"PATH=/usr/local/bin", "HOME=" + HomeDir},
		WorkingDir: HomeDir,
		Labels:     r.labels(),
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return Image{}, err
	}
	img = mutate.Annotations(img, r.labels()).(v1.Image)
	sbom, err := spdx(sbomSubject{
		info: bin.info, platform: bin.platform.String(), version: r.Version,
		revision: r.Revision, source: r.Source, created: r.Created,
	})
	if err != nil {
		return Image{}, fmt.Errorf("writing the SBOM: %w", err)
	}
	return Image{Platform: bin.platform, Image: img, SBOM: sbom, Binary: bin.path}, nil
}
