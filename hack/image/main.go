// Command image builds promoter's own multi-arch image without a Docker daemon and pushes
// it (internal/selfimage): per platform a static binary on a minimal base, an SPDX SBOM
// attached as a referrer, the arch tags a merge-only promoter pipeline takes. Progress goes
// to stderr, one line per pushed image to stdout. `bash hack/image.sh` runs it.
//
//	go run ./hack/image [flags] REGISTRY/REPO [TAG]
//
// TAG is the revision, by default the commit: the images are tagged TAG-amd64 and
// TAG-arm64, and with --index the multi-arch index TAG. A CI job that signs before it
// tags runs it twice: --no-tag --report FILE (push by digest), then, after signing each
// digest, --tag-from FILE.
//
// It lives outside cmd/promoter so that the shipped binary carries no build code.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/promoter-dev/promoter/internal/selfimage"
	"github.com/promoter-dev/promoter/internal/types"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// flags are the command line of hack/image.sh.
type flags struct {
	platforms, version, source, caBundle string
	index, noTag, insecure               bool
	tagFrom, report, out, dir            string
	repo, tag                            string // the arguments REGISTRY/REPO [TAG]
}

// parse reads the command line; it returns flag.ErrHelp for --help.
func parse(args []string, stderr io.Writer) (*flags, error) {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: hack/image.sh [flags] REGISTRY/REPO [TAG]\n\nTAG (default: the commit) names the arch tags TAG-<arch> and, with --index, the index.")
		fs.PrintDefaults()
	}
	var f flags
	fs.StringVar(&f.platforms, "platforms", "linux/amd64,linux/arm64", "platforms to build, comma-separated")
	fs.StringVar(&f.version, "version", "", "version stamped into the binary and the version annotation (default: git describe --tags --always --dirty)")
	fs.StringVar(&f.source, "source", selfimage.DefaultSource, "org.opencontainers.image.source")
	fs.StringVar(&f.caBundle, "ca-bundle", selfimage.DefaultCABundle, "CA certificates copied into the image")
	fs.BoolVar(&f.index, "index", false, "also push the multi-arch index under TAG (for users without a promoter)")
	fs.BoolVar(&f.noTag, "no-tag", false, "push by digest only: sign each digest, then tag with --tag-from")
	fs.StringVar(&f.tagFrom, "tag-from", "", "tag the digests of this --report file with their arch tags; builds nothing")
	fs.StringVar(&f.report, "report", "", "write what was pushed (digests, arch tags, sizes, SBOMs) to this JSON file")
	fs.BoolVar(&f.insecure, "insecure", false, "allow plain HTTP to the registry (loopback registries need no flag)")
	fs.StringVar(&f.out, "out", "", "directory for the binaries and layers (default: a temporary directory, removed at the end)")
	fs.StringVar(&f.dir, "dir", "", "the promoter checkout to build, a git work tree (default: the module around the working directory)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fs.Usage()
		return nil, usageError("want REGISTRY/REPO [TAG]")
	}
	f.repo, f.tag = fs.Arg(0), fs.Arg(1)
	switch {
	case f.tagFrom != "" && (f.noTag || f.index || f.report != "" || f.tag != ""):
		return nil, usageError("--tag-from only tags what a report lists: it takes REGISTRY/REPO and no --no-tag, --index, --report or TAG")
	case f.noTag && f.index:
		return nil, usageError("--index tags the index: it cannot go with --no-tag")
	}
	return &f, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	var nameOpts []name.Option
	if f.insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	repo, err := name.NewRepository(f.repo, nameOpts...)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	opts := []selfimage.Option{selfimage.WithLogger(log)}
	if f.tagFrom != "" {
		return tagFromReport(ctx, f.tagFrom, repo, stdout, opts)
	}
	spec, err := f.spec()
	if err != nil {
		return err
	}
	if spec.Out == "" {
		if spec.Out, err = os.MkdirTemp("", "promoter-image-"); err != nil {
			return err
		}
		defer os.RemoveAll(spec.Out)
	}
	rel, err := selfimage.Build(ctx, spec, opts...)
	if err != nil {
		return err
	}
	tag := f.tag
	if tag == "" {
		tag = rel.Revision
	}
	if strings.HasSuffix(rel.Revision, "-dirty") {
		log.Warn("the work tree has uncommitted changes: the binary says so (commit "+rel.Revision+"); release from a clean checkout", "revision", rel.Revision)
	}
	pushed, err := selfimage.Push(ctx, rel, selfimage.Target{Repo: repo, Tag: tag, ArchTags: !f.noTag, Index: f.index}, opts...)
	if err != nil {
		return err
	}
	printPushed(stdout, repo, tag, pushed, !f.noTag)
	if f.report != "" {
		return writeReport(f.report, pushed)
	}
	return nil
}

// tagFromReport tags the digests the --report file report lists with their arch tags in
// repo (--tag-from), and prints each.
func tagFromReport(ctx context.Context, report string, repo name.Repository, stdout io.Writer, opts []selfimage.Option) error {
	var p selfimage.Pushed
	b, err := os.ReadFile(report)
	if err == nil {
		err = json.Unmarshal(b, &p)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", report, err)
	}
	if err := selfimage.TagArchImages(ctx, repo, p.Images, opts...); err != nil {
		return err
	}
	for _, img := range p.Images {
		fmt.Fprintf(stdout, "%s\t%s:%s\t%s\n", img.Platform, repo, img.ArchTag, img.Digest)
	}
	return nil
}

// spec is what to build: the flags, the checkout (the module around the working
// directory without --dir) and SOURCE_DATE_EPOCH. Out is "" without --out.
func (f *flags) spec() (selfimage.Spec, error) {
	spec := selfimage.Spec{Version: f.version, Source: f.source, CABundle: f.caBundle, Out: f.out}
	var err error
	if spec.Dir = f.dir; spec.Dir == "" {
		if spec.Dir, err = moduleRoot(); err != nil {
			return spec, err
		}
	}
	for _, s := range strings.Split(f.platforms, ",") {
		p, err := types.ParsePlatform(strings.TrimSpace(s))
		if err != nil {
			return spec, err
		}
		spec.Platforms = append(spec.Platforms, p)
	}
	if epoch := os.Getenv("SOURCE_DATE_EPOCH"); epoch != "" {
		sec, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return spec, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", epoch, err)
		}
		spec.Created = time.Unix(sec, 0).UTC()
	}
	return spec, nil
}

// printPushed prints a line per pushed image (its arch tag when tagged) and the index's.
func printPushed(stdout io.Writer, repo name.Repository, tag string, pushed *selfimage.Pushed, tagged bool) {
	for _, img := range pushed.Images {
		where := "by digest only"
		if tagged {
			where = fmt.Sprintf("%s:%s", repo, img.ArchTag)
		}
		fmt.Fprintf(stdout, "%s\t%s@%s\t%s\t%.1f MB\tsbom %s\n", img.Platform, repo, img.Digest, where, float64(img.Size)/1e6, img.SBOM)
	}
	if pushed.Index != "" {
		fmt.Fprintf(stdout, "index\t%s@%s\t%s:%s\n", repo, pushed.Index, repo, tag)
	}
}

// writeReport writes what was pushed to file as JSON (--report).
func writeReport(file string, pushed *selfimage.Pushed) error {
	b, err := json.MarshalIndent(pushed, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return nil
}

// moduleRoot is the directory of this module's go.mod, found from the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}
