package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Peer is a copy tool promoter is compared with, as one command line per destination;
// {src}, {dst}, {srchost} and {dsthost} are replaced by the references and their hosts.
type Peer struct {
	Name string
	Args []string
}

// Peers are the commands the comparison runs, with the flags that make each copy every
// platform of an index, unchanged, over plain HTTP to loopback registries.
func Peers() []Peer {
	return []Peer{
		{Name: "crane", Args: []string{"crane", "copy", "--insecure", "{src}", "{dst}"}},
		{Name: "regctl", Args: []string{"regctl", "image", "copy", "--host", "reg={srchost},tls=disabled", "--host", "reg={dsthost},tls=disabled", "{src}", "{dst}"}},
		{Name: "skopeo", Args: []string{"skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests",
			"--src-tls-verify=false", "--dest-tls-verify=false", "docker://{src}", "docker://{dst}"}},
	}
}

// PromoteCommand is how promoter copies, to one or several destinations in one process.
const PromoteCommand = "promoter promote {src} {dst} [{dst}...]"

func (p Peer) argv(src, dst string) []string {
	r := strings.NewReplacer("{src}", src, "{dst}", dst, "{srchost}", host(src), "{dsthost}", host(dst))
	out := make([]string, len(p.Args))
	for i, a := range p.Args {
		out[i] = r.Replace(a)
	}
	return out
}

func host(ref string) string { h, _, _ := strings.Cut(ref, "/"); return h }

// PeersScript is the script that runs a peer once per destination, all in parallel, as a
// user would script a copy to several registries with a tool that takes one destination:
// `bash peers.sh PEER SRC DST...`. It fails when any copy fails.
func PeersScript() string {
	var b strings.Builder
	b.WriteString(`#!/usr/bin/env bash
# peers.sh PEER SRC DST...: copies SRC to every DST with PEER, one process per DST, in parallel.
set -uo pipefail
peer=$1 src=$2
shift 2
copy() {
  case $peer in
`)
	r := strings.NewReplacer("{src}", `"$src"`, "{dst}", `"$1"`, "{srchost}", `${src%%/*}`, "{dsthost}", `${1%%/*}`)
	for _, p := range Peers() {
		args := make([]string, len(p.Args))
		for i, a := range p.Args {
			if strings.Contains(a, "host}") {
				args[i] = `"` + r.Replace(a) + `"`
			} else {
				args[i] = r.Replace(a)
			}
		}
		fmt.Fprintf(&b, "    %s) %s ;;\n", p.Name, strings.Join(args, " "))
	}
	b.WriteString(`    *) echo "unknown peer $peer" >&2; return 2 ;;
  esac
}
pids=()
for dst in "$@"; do copy "$dst" & pids+=($!); done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
`)
	return b.String()
}

// CopyResult compares promoter with one peer for one destination count.
type CopyResult struct {
	Peer  string
	Dests int
	// Promoter and PeerTime are the medians of the rounds' wall times.
	Promoter, PeerTime time.Duration
	// PromoterCPU and PeerCPU are the medians of what each copy cost in CPU time (user and
	// system): the copying process (a script's peers included), and the registries (the
	// source and every destination) while it ran.
	PromoterCPU, PeerCPU CopyCPU
	Rounds               int
}

// CopyCPU is the CPU time of one copy.
type CopyCPU struct {
	Copier, Registries time.Duration
}

// copyRun is one copy: its wall time and CPU.
type copyRun struct {
	took time.Duration
	cpu  CopyCPU
}

// medianRun is the median wall time, and the median of each CPU figure, of runs.
func medianRun(runs []copyRun) copyRun {
	var took, copier, regs []time.Duration
	for _, r := range runs {
		took, copier, regs = append(took, r.took), append(copier, r.cpu.Copier), append(regs, r.cpu.Registries)
	}
	return copyRun{took: Median(took), cpu: CopyCPU{Copier: Median(copier), Registries: Median(regs)}}
}

// Ratio is promoter's median over the peer's.
func (c CopyResult) Ratio() float64 { return c.Promoter.Seconds() / c.PeerTime.Seconds() }

// RSSResult is the peak resident set of one `promoter promote` of a large image, from
// wait4's rusage.
type RSSResult struct {
	ImageBytes int64
	MaxRSS     int64 // bytes
	Took       time.Duration
	// Baseline is the peak RSS of `promoter version`: what the binary costs before it
	// copies anything.
	Baseline int64
}

const copyRepo = "bench/copy"

// runCopyPhase compares promoter with the peers, then measures promoter's peak RSS, from
// a source registry without notifications to destination registries started for each
// single copy (new storage, new port): nothing can be skipped as present or mounted, by
// any tool, whatever it caches between runs.
func (e *env) runCopyPhase(ctx context.Context, rep *Report) error {
	src, err := startRegistry(ctx, e.cfg.Tools.Registry, e.storage, 0, nil)
	if err != nil {
		return err
	}
	defer src.Close()
	e.logf("copy: building and pushing 2 × %d × %s", e.cfg.CopyLayers, size(e.cfg.CopyLayerSize))
	idx, err := bigIndex([]string{"amd64", "arm64"}, 1, e.cfg.CopyLayers, e.cfg.CopyLayerSize)
	if err != nil {
		return err
	}
	srcRef := src.Host + "/" + copyRepo + ":v1"
	if err := e.cl.push(ctx, srcRef, idx); err != nil {
		return err
	}
	want, err := e.cl.digest(ctx, srcRef)
	if err != nil {
		return err
	}
	script := filepath.Join(e.work, "peers.sh")
	if err := os.WriteFile(script, []byte(PeersScript()), 0o755); err != nil {
		return err
	}
	tools := append([]string{"promoter"}, peerNames()...)
	runs := map[string][]copyRun{} // by tool and destination count
	for round := range e.cfg.Rounds {
		order := slices.Clone(tools)
		rotate(order, round)
		for _, dests := range []int{1, 3} {
			for _, tool := range order {
				r, err := e.copyOnce(ctx, tool, script, src, srcRef, want, dests)
				if err != nil {
					return fmt.Errorf("round %d, %s to %d destination(s): %w", round+1, tool, dests, err)
				}
				k := fmt.Sprintf("%s/%d", tool, dests)
				runs[k] = append(runs[k], r)
				e.logf("copy: round %d/%d, %s to %d destination(s): %s (CPU: copier %s, registries %s)", round+1, e.cfg.Rounds, tool, dests,
					r.took.Round(time.Millisecond), r.cpu.Copier.Round(time.Millisecond), r.cpu.Registries.Round(time.Millisecond))
			}
		}
	}
	for _, dests := range []int{1, 3} {
		prom := medianRun(runs[fmt.Sprintf("promoter/%d", dests)])
		for _, p := range peerNames() {
			peer := medianRun(runs[fmt.Sprintf("%s/%d", p, dests)])
			rep.Copies = append(rep.Copies, CopyResult{Peer: p, Dests: dests, Rounds: e.cfg.Rounds,
				Promoter: prom.took, PeerTime: peer.took, PromoterCPU: prom.cpu, PeerCPU: peer.cpu})
		}
	}
	rep.RSS, err = e.rss(ctx, src)
	return err
}

func peerNames() []string {
	var out []string
	for _, p := range Peers() {
		out = append(out, p.Name)
	}
	return out
}

// rotate moves the first r%len elements of s to its end.
func rotate(s []string, r int) {
	if len(s) == 0 {
		return
	}
	r %= len(s)
	tmp := append(slices.Clone(s[r:]), s[:r]...)
	copy(s, tmp)
}

// copyOnce starts dests fresh registries, copies srcRef (on src) to each with tool and
// checks each holds want.
func (e *env) copyOnce(ctx context.Context, tool, script string, src *registryProc, srcRef, want string, dests int) (copyRun, error) {
	var dsts []string
	regs := []*registryProc{src}
	for range dests {
		r, err := startRegistry(ctx, e.cfg.Tools.Registry, e.storage, 0, nil)
		if err != nil {
			return copyRun{}, err
		}
		defer r.Close()
		dsts = append(dsts, r.Host+"/"+copyRepo+":v1")
		regs = append(regs, r)
	}
	before, err := cpuOf(regs)
	if err != nil {
		return copyRun{}, err
	}
	var argv []string
	switch {
	case tool == "promoter":
		argv = append([]string{e.promoter, "promote", srcRef}, dsts...)
	case dests == 1:
		argv = peerByName(tool).argv(srcRef, dsts[0])
	default:
		argv = append([]string{"bash", script, tool, srcRef}, dsts...)
	}
	took, copier, stderr, err := e.run(ctx, argv)
	if err != nil {
		return copyRun{}, err
	}
	after, err := cpuOf(regs)
	if err != nil {
		return copyRun{}, err
	}
	if tool == "promoter" {
		// Its summary line per destination says what it skipped or mounted: nothing.
		if n := strings.Count(stderr, "mounted 0 B, skipped 0 B"); n != dests {
			return copyRun{}, fmt.Errorf("promoter did not upload everything to %d fresh destination(s):\n%s", dests, stderr)
		}
	}
	for _, d := range dsts {
		got, err := e.cl.digest(ctx, d)
		if err != nil {
			return copyRun{}, err
		}
		if got != want {
			return copyRun{}, fmt.Errorf("%s holds %s after the copy, the source is %s", d, got, want)
		}
	}
	return copyRun{took: took, cpu: CopyCPU{Copier: copier, Registries: after - before}}, nil
}

// cpuOf is the CPU time (user and system) the registry processes have used so far, from
// /proc/PID/stat.
func cpuOf(regs []*registryProc) (time.Duration, error) {
	var total time.Duration
	for _, r := range regs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.cmd.Process.Pid))
		if err != nil {
			return 0, fmt.Errorf("reading the CPU time of the registry on %s: %w", r.Host, err)
		}
		// The fields after the command name, which is in parentheses and may hold spaces:
		// utime and stime are the 14th and 15th fields of the line, in clock ticks.
		_, rest, ok := strings.Cut(string(b), ") ")
		f := strings.Fields(rest)
		if !ok || len(f) < 13 {
			return 0, fmt.Errorf("reading the CPU time of the registry on %s: unexpected /proc stat %q", r.Host, b)
		}
		for _, s := range f[11:13] {
			ticks, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("reading the CPU time of the registry on %s: %w", r.Host, err)
			}
			total += time.Duration(ticks) * time.Second / clockTicks
		}
	}
	return total, nil
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux architecture
// Go supports.
const clockTicks = 100

func peerByName(name string) Peer {
	for _, p := range Peers() {
		if p.Name == name {
			return p
		}
	}
	panic("no peer " + name)
}

// run runs argv, its first element looked up in the tools' directories first, and returns
// its wall time, its CPU time (its children's included, as wait4 reports it) and stderr.
func (e *env) run(ctx context.Context, argv []string) (time.Duration, time.Duration, string, error) {
	path := os.Getenv("PATH")
	for _, t := range []string{e.cfg.Tools.Skopeo, e.cfg.Tools.Regctl, e.cfg.Tools.Crane} {
		path = filepath.Dir(t) + string(os.PathListSeparator) + path
	}
	bin := argv[0]
	if !strings.Contains(bin, "/") {
		p, err := lookPath(bin, path)
		if err != nil {
			return 0, 0, "", err
		}
		bin = p
	}
	cmd := exec.CommandContext(ctx, bin, argv[1:]...)
	cmd.Env = append(os.Environ(), "PATH="+path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		return 0, 0, "", fmt.Errorf("%s: %w\n%s%s", strings.Join(argv, " "), err, stdout.String(), stderr.String())
	}
	return took, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), stderr.String(), nil
}

func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

// rss promotes a single-platform image of cfg.RSSLayers × cfg.RSSLayerSize to a fresh
// registry and measures the process's peak RSS (peakRSS).
func (e *env) rss(ctx context.Context, src *registryProc) (RSSResult, error) {
	total := int64(e.cfg.RSSLayers) * e.cfg.RSSLayerSize
	e.logf("rss: building and pushing %d × %s", e.cfg.RSSLayers, size(e.cfg.RSSLayerSize))
	img, err := bigImage("amd64", 99, e.cfg.RSSLayers, e.cfg.RSSLayerSize)
	if err != nil {
		return RSSResult{}, err
	}
	srcRef := src.Host + "/bench/big:v1"
	if err := e.cl.push(ctx, srcRef, img); err != nil {
		return RSSResult{}, err
	}
	want, err := e.cl.digest(ctx, srcRef)
	if err != nil {
		return RSSResult{}, err
	}
	dst, err := startRegistry(ctx, e.cfg.Tools.Registry, e.storage, 0, nil)
	if err != nil {
		return RSSResult{}, err
	}
	defer dst.Close()
	dstRef := dst.Host + "/bench/big:v1"
	e.logf("rss: promoter promote of %s", size(total))
	took, peak, err := e.peakRSS(ctx, e.promoter, "promote", srcRef, dstRef)
	if err != nil {
		return RSSResult{}, err
	}
	if got, err := e.cl.digest(ctx, dstRef); err != nil || got != want {
		return RSSResult{}, fmt.Errorf("%s after the promotion: %s, %v; want %s", dstRef, got, err, want)
	}
	_, base, err := e.peakRSS(ctx, e.promoter, "version")
	if err != nil {
		return RSSResult{}, err
	}
	return RSSResult{ImageBytes: total, MaxRSS: peak, Took: took, Baseline: base}, nil
}

// peakRSS runs argv under hack/bench/rusage and returns its wall time and the peak RSS in
// bytes that rusage read from wait4 (see that command for why not from the bench itself).
func (e *env) peakRSS(ctx context.Context, argv ...string) (time.Duration, int64, error) {
	took, _, stderr, err := e.run(ctx, append([]string{e.rusage}, argv...))
	if err != nil {
		return 0, 0, err
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	kib, ok := strings.CutPrefix(lines[len(lines)-1], "maxrss_kib=")
	n, err := strconv.ParseInt(kib, 10, 64)
	if !ok || err != nil {
		return 0, 0, fmt.Errorf("%s printed no maxrss_kib line:\n%s", e.rusage, stderr)
	}
	return took, n * 1024, nil
}

// size formats the sizes the bench builds: 512 B, 64 KiB, 8 MiB, 1 GiB, 1.5 GiB.
func size(n int64) string {
	for _, u := range []struct {
		n    int64
		unit string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.n {
			return strconv.FormatFloat(float64(n)/float64(u.n), 'f', -1, 64) + " " + u.unit
		}
	}
	return strconv.FormatInt(n, 10) + " B"
}
