package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/promoter-dev/promoter/internal/merge"
	"github.com/promoter-dev/promoter/internal/types"
)

type mergeOptions struct {
	target    string
	platforms []string
	template  string
	revision  string
	source    string
	dryRun    bool
}

func newMergeCmd(g *globalOptions) *cobra.Command {
	o := &mergeOptions{}
	cmd := &cobra.Command{
		Use:   "merge --target REGISTRY/REPO:TAG REF [REF...]",
		Short: "Merge per-platform images into one multi-arch OCI index",
		Long: `Merge the given images (tags or digests) into one OCI image index pushed to --target,
and print the index digest. Each image's platform is read from its config; a BuildKit
index (image plus attestation manifest) is flattened, keeping the attestation. Children
are ordered by platform and the created annotation comes from the newest child, so the
same images always give the same digest.

Instead of REFs, --platforms with --template and --revision builds the references from a
pattern with {revision}, {os}, {arch} and {variant}, like manifest-tool's from-args; each
image must then be of the platform its reference was built for.

An existing --target tag is never moved: if it holds another index, merge fails and says
which. Registry credentials come from the docker config (~/.docker/config.json).`,
		Example: `  promoter merge --target registry.example/app:3f2c1a9 \
      registry.example/app:3f2c1a9-amd64 registry.example/app:3f2c1a9-arm64
  promoter merge --target registry.example/app:3f2c1a9 --revision 3f2c1a9 \
      --platforms linux/amd64,linux/arm64,linux/arm/v7 \
      --template 'registry.example/app:{revision}-{arch}{variant}'
  promoter merge --dry-run --target localhost:5000/app:v1 localhost:5000/app:v1-amd64`,
		RunE: func(cmd *cobra.Command, args []string) error {
			children, err := o.children(args)
			if err != nil {
				return err
			}
			c := g.registry()
			res, err := merge.Build(cmd.Context(), c, merge.Request{
				Target: o.target, Children: children, Revision: o.revision, Source: o.source,
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if o.dryRun {
				var buf bytes.Buffer
				if err := json.Indent(&buf, res.Manifest, "", "  "); err != nil {
					return err
				}
				fmt.Fprintln(out, buf.String())
				fmt.Fprintf(cmd.ErrOrStderr(), "dry run: %s would be %s\n", o.target, res.Digest)
				return nil
			}
			outcome, err := merge.Push(cmd.Context(), c, o.target, res)
			if err != nil {
				return err
			}
			for _, ch := range res.Children {
				fmt.Fprintf(cmd.ErrOrStderr(), "%-14s %s  %s\n", ch.Platform, ch.Digest, ch.Ref)
			}
			if outcome == merge.Exists {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s already holds this index; nothing pushed\n", o.target)
			}
			fmt.Fprintln(out, res.Digest)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.target, "target", "", "tag to push the index to (REGISTRY/REPO:TAG); required")
	f.StringSliceVar(&o.platforms, "platforms", nil, "platforms to merge (os/arch[/variant], comma-separated); needs --template and --revision")
	f.StringVar(&o.template, "template", "", "reference pattern with {revision} {os} {arch} {variant}, used with --platforms")
	f.StringVar(&o.revision, "revision", "", "revision: fills {revision} and the org.opencontainers.image.revision annotation")
	f.StringVar(&o.source, "source", "", "source repository URL for the org.opencontainers.image.source annotation")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the index JSON instead of pushing it")
	_ = cmd.MarkFlagRequired("target")
	return cmd
}

// children turns the arguments, or the platforms and template, into merge children.
func (o *mergeOptions) children(args []string) ([]merge.Child, error) {
	if o.revision != "" {
		if err := types.ValidateRevision(o.revision); err != nil {
			return nil, fmt.Errorf("--revision: %w", err)
		}
	}
	if len(o.platforms) == 0 {
		if o.template != "" {
			return nil, errors.New("--template needs --platforms")
		}
		if len(args) == 0 {
			return nil, errors.New("give the images to merge as arguments, or --platforms with --template and --revision")
		}
		out := make([]merge.Child, len(args))
		for i, a := range args {
			out[i] = merge.Child{Ref: a}
		}
		return out, nil
	}
	if len(args) > 0 {
		return nil, errors.New("give either image arguments or --platforms, not both")
	}
	if o.template == "" || o.revision == "" {
		return nil, errors.New("--platforms needs --template (e.g. 'registry.example/app:{revision}-{arch}') and --revision")
	}
	if !strings.Contains(o.template, "{revision}") {
		return nil, fmt.Errorf("--template %q has no {revision}", o.template)
	}
	var out []merge.Child
	for _, s := range o.platforms {
		p, err := types.ParsePlatform(s)
		if err != nil {
			return nil, fmt.Errorf("--platforms: %w", err)
		}
		out = append(out, merge.Child{Ref: types.ArchTag(o.template).Render(o.revision, p), Platform: p})
	}
	return out, nil
}
