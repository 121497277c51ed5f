package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Report is what one run measured.
type Report struct {
	Config     Config
	Machine    Machine
	Storage    string
	Durability string
	// Index and Promoted are last arch push → index readable in staging, and → signed and
	// promoted to the one destination.
	Index, Promoted Summary
	Copies          []CopyResult
	Ingest          []IngestResult
	RSS             RSSResult
}

// Verdicts of a figure against its target.
const (
	met    = "met"
	missed = "**missed**"
	noGoal = "—"
)

func verdict(ok bool) string {
	if ok {
		return met
	}
	return missed
}

// Row labels, in table order; the e2e test checks each is present with figures.
const (
	RowIndex    = "Last arch push → index readable"
	RowPromoted = "Last arch push → signed + promoted (1 destination)"
	RowCopy     = "Promote to %s vs %s"
	RowIngest   = "Webhook ingest, %d concurrent %s"
	RowRSS      = "Peak RSS of `promoter promote`, %s image"
)

func msf(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
func sf(d time.Duration) string  { return fmt.Sprintf("%.2f s", d.Seconds()) }

func latencyFigure(s Summary) string {
	return fmt.Sprintf("p50 %s / p90 %s / p99 %s / max %s ms", msf(s.P50), msf(s.P90), msf(s.P99), msf(s.Max))
}

// Markdown writes the report: a header naming the machine, storage and durability, one
// table of figures with their targets, and the commands a reader needs to reproduce it.
func (r *Report) Markdown(w io.Writer) {
	c := r.Config
	m := r.Machine
	fmt.Fprintf(w, "### promoter benchmark\n\n")
	fmt.Fprintf(w, "- **Machine:** %d CPUs (%s), %s RAM, Linux %s, %s; commit %s; %s\n", m.CPUs, m.CPUModel, m.MemTotal, m.Kernel, m.GoVersion, m.Commit, m.Date)
	fmt.Fprintf(w, "- **Registry storage:** %s, every registry a separate `registry serve` process\n", r.Storage)
	fmt.Fprintf(w, "- **Durability:** %s\n", r.Durability)
	fmt.Fprintf(w, "- **Tools:** %s\n", m.Peers)
	fmt.Fprintf(w, "- **End times:** registry notification timestamps, received on a second notification endpoint of each registry (the bench's own loopback listener); no polling\n")
	fmt.Fprintf(w, "- **Peak RSS:** ru_maxrss from wait4, read by a small helper process (hack/bench/rusage) that starts promoter: Linux carries a parent's RSS peak across exec\n\n")

	fmt.Fprintln(w, "| Measurement | Figure | Samples | Target | |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	samples := fmt.Sprintf("%d revisions (first %d excluded as warm-up)", r.Index.N, c.Warmup)
	onTmpfs := c.Storage == StorageTmpfs
	idxTarget, idxVerdict := "p50 ≤ 8 ms, p99 ≤ 30 ms (tmpfs)", verdict(r.Index.P50 <= 8*time.Millisecond && r.Index.P99 <= 30*time.Millisecond)
	if !onTmpfs {
		idxVerdict = noGoal + " (target is for tmpfs)"
	}
	row(w, RowIndex, latencyFigure(r.Index), samples, idxTarget, idxVerdict)
	row(w, RowPromoted, latencyFigure(r.Promoted), samples, "p50 ≤ 60 ms", verdict(r.Promoted.P50 <= 60*time.Millisecond))

	copied := fmt.Sprintf("2 platforms × %d layers × %s", c.CopyLayers, size(c.CopyLayerSize))
	for _, cp := range r.Copies {
		target, v := copyTarget(cp)
		peer := peerLabel(cp.Peer, cp.Dests)
		fig := fmt.Sprintf("promoter %s, %s %s: **%.2f×**", sf(cp.Promoter), cp.Peer, sf(cp.PeerTime), cp.Ratio())
		row(w, fmt.Sprintf(RowCopy, plural(cp.Dests, "destination"), peer), fig, fmt.Sprintf("%s, medians; %s", plural(cp.Rounds, "round"), copied), target, v)
	}
	for _, in := range r.Ingest {
		fig := fmt.Sprintf("p50 %s / p99 %s ms, **%.0f events/s**", msf(in.P50), msf(in.P99), in.Rate)
		samples := fmt.Sprintf("%d events", in.N)
		if in.Failed > 0 {
			samples += fmt.Sprintf(" (%d not accepted)", in.Failed)
		}
		target, v := "p99 < 20 ms", verdict(in.P99 < 20*time.Millisecond && in.Failed == 0)
		if in.Senders == maxSenders(r.Ingest) {
			target = "≥ 5,000 events/s, p99 < 20 ms, fsynced"
			v = verdict(in.Rate >= 5000 && in.P99 < 20*time.Millisecond && in.Failed == 0)
		}
		row(w, fmt.Sprintf(RowIngest, in.Senders, noun(in.Senders, "sender")), fig, samples, target, v)
	}
	row(w, fmt.Sprintf(RowRSS, size(r.RSS.ImageBytes)),
		fmt.Sprintf("**%.1f MiB** (copied in %s; `promoter version` alone: %.1f MiB)", float64(r.RSS.MaxRSS)/(1<<20), sf(r.RSS.Took), float64(r.RSS.Baseline)/(1<<20)),
		fmt.Sprintf("1 run, %d × %s layers", c.RSSLayers, size(c.RSSLayerSize)), "< 128 MiB", verdict(r.RSS.MaxRSS < 128<<20))

	fmt.Fprintf(w, "\nRatios are promoter's median wall time over the peer's (below 1: promoter is faster). Every copy is a separate process, promoter's included, into destination registries started for that copy alone (new storage, new port), so nothing is skipped or mounted; each destination's digest is checked afterwards. Commands (`{src}`, `{dst}`: references with tag; `{srchost}`, `{dsthost}`: their hosts):\n\n")
	fmt.Fprintf(w, "- promoter: `%s`\n", PromoteCommand)
	for _, p := range Peers() {
		fmt.Fprintf(w, "- %s: `%s`\n", p.Name, strings.Join(p.Args, " "))
	}
	fmt.Fprintf(w, "- 3 destinations with a peer: `bash peers.sh PEER {src} {dst1} {dst2} {dst3}`, one peer process per destination in parallel (`go run ./hack/bench --print-peers-script` prints it)\n")

	fmt.Fprintf(w, "\nWhere the copies' time goes: CPU time (user + system, medians) of the copying process (a script's peers included) and of the registries (the source and every destination) during the copy, against its wall time on %d CPUs:\n\n", r.Machine.CPUs)
	fmt.Fprintln(w, "| Copy | Wall | CPU of the copier | CPU of the registries |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, dests := range []int{1, 3} {
		for i, cp := range r.Copies {
			if cp.Dests != dests {
				continue
			}
			if i == 0 || r.Copies[i-1].Dests != dests {
				row(w, fmt.Sprintf("promoter, %s", plural(dests, "destination")), sf(cp.Promoter), sf(cp.PromoterCPU.Copier), sf(cp.PromoterCPU.Registries))
			}
			row(w, fmt.Sprintf("%s, %s", cp.Peer, plural(dests, "destination")), sf(cp.PeerTime), sf(cp.PeerCPU.Copier), sf(cp.PeerCPU.Registries))
		}
	}
}

func noun(n int, s string) string {
	if n == 1 {
		return s
	}
	return s + "s"
}

func plural(n int, s string) string { return fmt.Sprintf("%d %s", n, noun(n, s)) }

func maxSenders(in []IngestResult) int {
	m := 0
	for _, r := range in {
		m = max(m, r.Senders)
	}
	return m
}

func peerLabel(peer string, dests int) string {
	var cmd string
	switch peer {
	case "crane":
		cmd = "`crane copy`"
	case "regctl":
		cmd = "`regctl image copy`"
	case "skopeo":
		cmd = "`skopeo copy --all`"
	default:
		cmd = peer
	}
	if dests > 1 {
		return cmd + " ×" + fmt.Sprint(dests) + " in parallel"
	}
	return cmd
}

// copyTarget is issue 14's target for a comparison: ≤ 0.8× crane and ≤ 0.7× regctl to one
// destination, ≤ 0.5× the parallel script to three; none for skopeo to one.
func copyTarget(c CopyResult) (string, string) {
	var limit float64
	switch {
	case c.Dests > 1:
		limit = 0.5
	case c.Peer == "crane":
		limit = 0.8
	case c.Peer == "regctl":
		limit = 0.7
	default:
		return noGoal, noGoal
	}
	return fmt.Sprintf("≤ %.1f×", limit), verdict(c.Ratio() <= limit)
}

func row(w io.Writer, cells ...string) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
}
