package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/promoter-dev/promoter/internal/promote"
)

type promoteOptions struct {
	dryRun           bool
	requireSignature bool
	keys             []string
	jobs             int
	timeout          time.Duration
	mutableTags      []string
}

func newPromoteCmd(g *globalOptions) *cobra.Command {
	o := &promoteOptions{}
	cmd := &cobra.Command{
		Use:     "promote SRC DST [DST...]",
		Aliases: []string{"copy"},
		Short:   "Copy an image or index with its signatures and referrers to other registries",
		Long: `Copy SRC (a tag or digest) byte for byte to each DST, in parallel: the index, every
child manifest, layer and config, the cosign signatures, attestations and SBOMs
(sha256-<hex>.sig/.att/.sbom) and the OCI referrers of each of them, and the referrers'
own referrers. DST is "host/repo" (SRC's tag is kept) or "host/repo:tag".

What a destination already has is skipped; blobs within one registry are mounted rather
than uploaded. With several destinations, each source blob is read once and streamed to
every destination that needs it. A destination tag that points at another digest is never moved unless
named with --mutable-tag. With --require-signature, SRC must verify with --key before a
single byte is copied.

On a terminal, progress is shown on stderr; otherwise one line per artifact copied is
printed. --dry-run prints the plan (copy, mount or skip, with sizes) and writes nothing.`,
		Example: `  promoter promote staging.example/web:3f2c1a9 prod-a.example/web prod-b.example/web
  promoter copy --dry-run staging.example/web:3f2c1a9 prod.example/web
  promoter promote --require-signature --key cosign.pub staging.example/web:3f2c1a9 prod.example/web`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPromote(cmd.Context(), g, o, args[0], args[1:], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "print what would be copied, mounted or skipped; write nothing")
	cmd.Flags().BoolVar(&o.requireSignature, "require-signature", false, "refuse SRC unless it verifies with --key")
	cmd.Flags().StringArrayVar(&o.keys, "key", nil, "public key for --require-signature: a PEM file, env://NAME or k8s://namespace/name (repeat to accept any of several)")
	cmd.Flags().IntVar(&o.jobs, "jobs", promote.DefaultJobs, "concurrent requests per registry host (promote.jobs)")
	cmd.Flags().DurationVar(&o.timeout, "timeout", promote.DefaultTimeout, "deadline of each destination, retries included (promote.timeout)")
	cmd.Flags().StringSliceVar(&o.mutableTags, "mutable-tag", nil, "destination tag allowed to move to another digest (repeatable)")
	return cmd
}

// newPlanCmd is `promote --dry-run` under its own name: the plan of a promotion.
func newPlanCmd(g *globalOptions) *cobra.Command {
	o := &promoteOptions{dryRun: true}
	cmd := &cobra.Command{
		Use:   "plan SRC DST [DST...]",
		Short: "Show what a promotion would copy, mount or skip, with sizes; write nothing",
		Long: `Plan a promotion of SRC to each DST without writing anything: every manifest, blob,
signature and referrer, and whether it would be copied, mounted from another repository
of the same registry, or skipped because the destination has it. Same as
"promoter promote --dry-run"; a destination tag that points at another digest is
reported as the error the promotion would fail with.`,
		Example: `  promoter plan staging.example/web:3f2c1a9 prod-a.example/web prod-b.example/web`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPromote(cmd.Context(), g, o, args[0], args[1:], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().IntVar(&o.jobs, "jobs", promote.DefaultJobs, "concurrent requests per registry host")
	cmd.Flags().DurationVar(&o.timeout, "timeout", promote.DefaultTimeout, "deadline of each destination")
	cmd.Flags().StringSliceVar(&o.mutableTags, "mutable-tag", nil, "destination tag allowed to move to another digest (repeatable)")
	return cmd
}

func runPromote(ctx context.Context, g *globalOptions, o *promoteOptions, src string, dsts []string, stdout, stderr io.Writer) error {
	log, err := g.logger(stderr)
	if err != nil {
		return err
	}
	if o.requireSignature && len(o.keys) == 0 {
		return errors.New("--require-signature needs --key (the public key to verify with)")
	}
	reg := g.registry()
	popts := []promote.Option{promote.WithJobs(o.jobs), promote.WithTimeout(o.timeout), promote.WithLogger(log)}
	if o.dryRun {
		popts = append(popts, promote.WithDryRun())
	}
	if o.requireSignature {
		v, err := loadVerifier(ctx, o.keys, reg)
		if err != nil {
			return err
		}
		popts = append(popts, promote.WithVerify(func(ctx context.Context, ref string) error {
			_, err := v.Verify(ctx, ref)
			return err
		}))
	}

	var bar *progressBar
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) && !o.dryRun {
		bar = &progressBar{w: stderr, dsts: map[string]promote.Event{}}
		popts = append(popts, promote.WithProgress(bar.update))
	} else if !o.dryRun {
		popts = append(popts, promote.WithProgress(func(e promote.Event) {
			if e.Item.Action != promote.Skip {
				fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", e.Item.Action, e.Item.Kind, e.Item.Ref, size(e.Item.Size))
			}
		}))
	}
	p, err := promote.New(reg, popts...)
	if err != nil {
		return fmt.Errorf("--jobs/--timeout: %w", err)
	}
	targets := make([]promote.Target, len(dsts))
	for i, dst := range dsts {
		targets[i] = promote.Target{Ref: dst, MutableTags: o.mutableTags, RequireSignature: o.requireSignature}
	}

	results, errs := p.Promote(ctx, src, targets)
	if bar != nil {
		bar.done()
	}
	if o.dryRun {
		printPlan(stdout, results)
	}
	for i, r := range results {
		if r == nil || errs[i] != nil {
			continue
		}
		fmt.Fprintf(stderr, "%s %s: uploaded %s, mounted %s, skipped %s\n", r.Destination, r.Digest, size(r.Uploaded), size(r.Mounted), size(r.Skipped))
	}
	return errors.Join(errs...)
}

// printPlan lists what a dry run would do, one line per item, grouped by destination.
func printPlan(w io.Writer, results []*promote.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	for _, r := range results {
		if r == nil {
			continue
		}
		fmt.Fprintf(tw, "# %s (%s): copy %s, mount %s, skip %s\n", r.Destination, r.Digest, size(r.Uploaded), size(r.Mounted), size(r.Skipped))
		for _, it := range r.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", it.Action, it.Kind, it.Ref, size(it.Size))
		}
	}
}

// progressBar redraws one stderr line with the totals over every destination.
type progressBar struct {
	w    io.Writer
	mu   sync.Mutex
	dsts map[string]promote.Event
	last time.Time
}

func (b *progressBar) update(e promote.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dsts[e.Destination] = e
	if time.Since(b.last) < 100*time.Millisecond && e.BlobsDone != e.BlobsTotal {
		return
	}
	b.last = time.Now()
	b.draw()
}

func (b *progressBar) draw() {
	var done, total int
	var bytesDone, bytesTotal int64
	for _, e := range b.dsts {
		done += e.BlobsDone
		total += e.BlobsTotal
		bytesDone += e.BytesDone
		bytesTotal += e.BytesTotal
	}
	fmt.Fprintf(b.w, "\r\033[Kpromoting to %d destination(s): blobs %d/%d, %s/%s", len(b.dsts), done, total, size(bytesDone), size(bytesTotal))
}

func (b *progressBar) done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.dsts) > 0 {
		b.draw()
		fmt.Fprintln(b.w)
	}
}

// size formats bytes for people: 512 B, 1.5 KiB, 8.0 MiB.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
