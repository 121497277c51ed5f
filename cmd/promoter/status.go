package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/status"
	"github.com/promoter-dev/promoter/internal/types"
)

type statusOptions struct {
	server   string
	token    string
	pipeline string
	limit    int
	json     bool
}

func newStatusCmd(*globalOptions) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [PIPELINE/REVISION]",
		Short: "Show the state of revisions as the daemon sees them",
		Long: `Show each revision's phase (building, waiting, merged, signed, promoted, failed,
conflicted), its platforms, its index and its destinations, read from a running daemon's
status API (the status listener, 127.0.0.1:8081 by default; never the webhook listener).
It follows the API's pages (in key order: pipeline, then revision) and prints newest
first; --limit stops after that many. Failed and conflicted revisions show their reason,
verbatim.
With PIPELINE/REVISION it shows that revision alone and, once it is merged, a line per
platform with the image's digest and why it was accepted into the merge: "built by
promoter (job JOB)", "signed by SIGNER" (a key, or a certificate identity and its issuer)
or "unverified", followed by "; DETAIL" when there is more to say.
Each release tag of a revision (source.releaseTags) has a line with its promotion to each
destination: done, conflicted (the tag points elsewhere there) or retrying; a revision
with no phase ("-") is known only by a release tag that waits for it to be built.

When the daemon sets auth.statusToken, pass the same token with --token (a value,
env:NAME or file:/path), or set PROMOTER_AUTH_STATUSTOKEN.`,
		Example: `  promoter status
  promoter status --server http://127.0.0.1:8081 --pipeline web --limit 20
  promoter status --token env:STATUS_TOKEN web/3f2c1a9`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.limit < 0 {
				return fmt.Errorf("--limit must not be negative, got %d", o.limit)
			}
			token := o.token
			if token == "" {
				token = os.Getenv(config.EnvName("auth.statusToken"))
			}
			if token != "" {
				var err error
				if token, err = config.Secret(token).Resolve(); err != nil {
					return fmt.Errorf("--token: %w", err)
				}
			}
			c := &status.Client{URL: o.server, Token: token}
			var revs []*types.Revision
			if len(args) == 1 {
				p, r, ok := strings.Cut(args[0], "/")
				if !ok {
					return fmt.Errorf("%q: want PIPELINE/REVISION", args[0])
				}
				rev, err := c.Revision(cmd.Context(), p, r)
				if err != nil {
					return err
				}
				revs = []*types.Revision{rev}
			} else {
				var err error
				if revs, err = c.List(cmd.Context(), o.pipeline, o.limit); err != nil {
					return err
				}
				sort.SliceStable(revs, func(i, j int) bool { return revs[i].Updated.After(revs[j].Updated) })
			}
			if o.json {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(revs)
			}
			return printRevisions(cmd, revs, len(args) == 1)
		},
	}
	cmd.Flags().StringVar(&o.server, "server", "http://127.0.0.1:8081", "base URL of the daemon's status listener (status)")
	cmd.Flags().StringVar(&o.token, "token", "", "bearer token of the status API (auth.statusToken): a value, env:NAME or file:/path")
	cmd.Flags().StringVar(&o.pipeline, "pipeline", "", "only this pipeline")
	cmd.Flags().IntVar(&o.limit, "limit", 0, "show at most this many revisions (0: all)")
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return cmd
}

// printRevisions prints revs as a table, each revision's reason, retries and releases
// under its row; one (a single revision asked for) adds each platform's evidence.
func printRevisions(cmd *cobra.Command, revs []*types.Revision, one bool) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', tabwriter.StripEscape)
	fmt.Fprintln(tw, "PIPELINE\tREVISION\tPHASE\tPLATFORMS\tINDEX\tPROMOTED\tUPDATED")
	for _, r := range revs {
		var plats []string
		for p, s := range r.Platforms {
			mark := "?"
			switch {
			case s.Digest != "":
				mark = "pushed"
			case s.Build != "":
				mark = string(s.Build)
			}
			plats = append(plats, p+"="+mark)
		}
		sort.Strings(plats)
		done := 0
		for _, p := range r.Promotions {
			if p.Done {
				done++
			}
		}
		phase := string(r.Phase)
		if phase == "" {
			phase = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", r.Pipeline, r.Revision, phase, strings.Join(plats, ","),
			short(r.Index), done, len(r.Promotions), r.Updated.Format(time.RFC3339))
		var lines []string
		if one {
			lines = evidenceLines(r)
		}
		if r.Reason != "" {
			lines = append(lines, "reason: "+r.Reason)
		}
		for _, line := range append(append(lines, retryLines(r)...), releaseLines(r)...) {
			fmt.Fprintf(tw, "\t\t%s\n", verbatim(line))
		}
	}
	return tw.Flush()
}

// verbatim keeps the tab writer from aligning s: a reason or a signer's name is printed
// as the daemon sent it, its tabs and line breaks included.
func verbatim(s string) string {
	esc := string([]byte{tabwriter.Escape})
	return esc + s + esc
}

// evidenceLines says, per platform of a merged revision, which image was merged and why it
// was accepted (types.Evidence.String); nothing before the merge.
func evidenceLines(r *types.Revision) []string {
	if r.Index == "" {
		return nil
	}
	var out []string
	for _, p := range sortedKeys(r.Platforms) {
		ps := r.Platforms[p]
		if ps.Evidence == nil {
			continue
		}
		line := p
		if d := cmp.Or(ps.Evidence.Digest, ps.Digest); d != "" {
			line += " " + short(d)
		}
		out = append(out, line+": "+ps.Evidence.String())
	}
	return out
}

// retryLines describes the steps of r that failed and are being retried.
func retryLines(r *types.Revision) []string {
	var out []string
	add := func(step string, rt types.Retry) {
		if rt.Failures > 0 {
			out = append(out, fmt.Sprintf("retrying %s: %d failures, next attempt %s: %s",
				step, rt.Failures, rt.Next.Format(time.RFC3339), rt.Error))
		}
	}
	add("merge", r.MergeRetry)
	add("signing", r.SignRetry)
	for _, d := range sortedKeys(r.Promotions) {
		if pr := r.Promotions[d]; !pr.Done {
			add("promotion to "+d, pr.Retry)
		}
	}
	for _, tag := range sortedKeys(r.Releases) {
		prs := r.Releases[tag].Promotions
		for _, d := range sortedKeys(prs) {
			if pr := prs[d]; !pr.Done {
				add("release "+tag+" to "+d, pr.Retry)
			}
		}
	}
	return out
}

// releaseLines describes each release tag of r: why it is not promoted, or its outcome at
// each destination it reached so far.
func releaseLines(r *types.Revision) []string {
	var out []string
	for _, tag := range sortedKeys(r.Releases) {
		rel := r.Releases[tag]
		var parts []string
		if rel.Reason != "" {
			parts = append(parts, rel.Reason)
		}
		for _, d := range sortedKeys(rel.Promotions) {
			switch pr := rel.Promotions[d]; {
			case pr.Done:
				parts = append(parts, d+" done")
			case pr.Conflicted:
				parts = append(parts, d+" conflicted: "+pr.Error)
			default:
				parts = append(parts, d+" retrying")
			}
		}
		if len(parts) == 0 {
			parts = append(parts, "waiting for the revision tag to reach a destination")
		}
		out = append(out, "release "+tag+": "+strings.Join(parts, "; "))
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}
