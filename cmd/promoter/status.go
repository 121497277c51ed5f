package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/promoter-dev/promoter/internal/types"
)

type statusOptions struct {
	server   string
	pipeline string
	json     bool
}

func newStatusCmd(*globalOptions) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [PIPELINE/REVISION]",
		Short: "Show the state of revisions as the daemon sees them",
		Long: `Show each revision's phase (building, waiting, merged, signed, promoted, failed,
conflicted), its platforms with digests, its index and its destinations, read from a
running daemon's /v1/revisions endpoint. Failed and conflicted revisions show the reason.`,
		Example: `  promoter status --server http://127.0.0.1:8080
  promoter status --server http://127.0.0.1:8080 web/3f2c1a9`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			u := strings.TrimSuffix(o.server, "/") + "/v1/revisions"
			if len(args) == 1 {
				p, r, ok := strings.Cut(args[0], "/")
				if !ok {
					return fmt.Errorf("%q: want PIPELINE/REVISION", args[0])
				}
				u += "/" + url.PathEscape(p) + "/" + url.PathEscape(r)
			} else if o.pipeline != "" {
				u += "?pipeline=" + url.QueryEscape(o.pipeline)
			}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, u, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("asking the daemon at %s (is `promoter serve` running? set --server): %w", o.server, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				var e struct{ Error string }
				_ = json.NewDecoder(resp.Body).Decode(&e)
				return fmt.Errorf("daemon answered %s: %s", resp.Status, e.Error)
			}
			var revs []*types.Revision
			if len(args) == 1 {
				var r types.Revision
				if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
					return fmt.Errorf("decoding daemon answer: %w", err)
				}
				revs = []*types.Revision{&r}
			} else if err := json.NewDecoder(resp.Body).Decode(&revs); err != nil {
				return fmt.Errorf("decoding daemon answer: %w", err)
			}
			if o.json {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(revs)
			}
			return printRevisions(cmd, revs)
		},
	}
	cmd.Flags().StringVar(&o.server, "server", "http://127.0.0.1:8080", "base URL of the daemon's listen address")
	cmd.Flags().StringVar(&o.pipeline, "pipeline", "", "only this pipeline")
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return cmd
}

func printRevisions(cmd *cobra.Command, revs []*types.Revision) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", r.Pipeline, r.Revision, r.Phase, strings.Join(plats, ","),
			short(r.Index), done, len(r.Promotions), r.Updated.Format(time.RFC3339))
		if r.Reason != "" {
			fmt.Fprintf(tw, "\t\treason: %s\n", r.Reason)
		}
		for _, line := range retryLines(r) {
			fmt.Fprintf(tw, "\t\t%s\n", line)
		}
	}
	return tw.Flush()
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
	dests := make([]string, 0, len(r.Promotions))
	for d := range r.Promotions {
		dests = append(dests, d)
	}
	sort.Strings(dests)
	for _, d := range dests {
		if pr := r.Promotions[d]; !pr.Done {
			add("promotion to "+d, pr.Retry)
		}
	}
	return out
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}
