package e2e

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/promoter-dev/promoter/internal/bench"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestBenchQuick keeps the benchmark (hack/bench.sh, internal/bench) from rotting without
// timing anything: it runs every measurement in quick mode (a few revisions, a small
// image, one round) against real registry processes, a `promoter serve` built from the
// tree and the real peers, and checks the table has every row, each with numbers. The
// figures themselves are never asserted.
func TestBenchQuick(t *testing.T) {
	cfg := bench.Quick()
	cfg.Tools = bench.Tools{
		Registry: testenv.Tool(t, "registry"), Crane: testenv.Tool(t, "crane"), Regctl: testenv.Tool(t, "regctl"),
		Skopeo: testenv.Tool(t, "skopeo"), Cosign: testenv.Tool(t, "cosign"),
	}
	cfg.DiskDir = t.TempDir()
	var progress bytes.Buffer
	cfg.Progress = &progress
	rep, err := bench.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("bench: %v\nprogress:\n%s", err, progress.String())
	}
	var out bytes.Buffer
	rep.Markdown(&out)
	table := out.String()

	rows, cpu := benchTables(table)
	want := benchRows(cfg)
	for _, label := range want {
		checkFigureRow(t, label, rows, table)
	}
	if len(rows) != len(want) {
		t.Errorf("the table has %d rows, want %d:\n%s", len(rows), len(want), table)
	}
	checkCPUTable(t, cpu, table)
	for _, s := range []string{"**Registry storage:** tmpfs", "SyncAlways", "**Machine:**", "crane copy --insecure", "skopeo --insecure-policy copy --all"} {
		if !strings.Contains(table, s) {
			t.Errorf("the report does not say %q:\n%s", s, table)
		}
	}
	t.Logf("quick bench (figures meaningless):\n%s", table)
}

// benchTables parses the report's two tables: the figures, then the CPU of each copy.
// Each maps a row's label to its other cells.
func benchTables(table string) (rows, cpu map[string][]string) {
	rows, cpu = map[string][]string{}, map[string][]string{}
	current := rows
	for _, line := range strings.Split(table, "\n") {
		switch {
		case strings.HasPrefix(line, "| Measurement"):
			current = rows
			continue
		case strings.HasPrefix(line, "| Copy |"):
			current = cpu
			continue
		case !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "|---"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		current[cells[0]] = cells[1:]
	}
	return rows, cpu
}

// benchRows are the labels of the figures table's rows that a run with cfg reports.
func benchRows(cfg bench.Config) []string {
	want := []string{bench.RowIndex, bench.RowPromoted}
	for _, dests := range []string{"1 destination", "3 destinations"} {
		for _, peer := range []string{"`crane copy`", "`regctl image copy`", "`skopeo copy --all`"} {
			if dests != "1 destination" {
				peer += " ×3 in parallel"
			}
			want = append(want, fmt.Sprintf(bench.RowCopy, dests, peer))
		}
	}
	for _, n := range cfg.IngestSenders {
		noun := "senders"
		if n == 1 {
			noun = "sender"
		}
		want = append(want, fmt.Sprintf(bench.RowIngest, n, noun))
	}
	return append(want, fmt.Sprintf(bench.RowRSS, "2 MiB"))
}

var (
	benchNumber  = regexp.MustCompile(`\d+(\.\d+)?`)
	benchSeconds = regexp.MustCompile(`^\d+\.\d\d s$`)
)

// checkFigureRow checks the figures table has a row label with a numeric figure, a
// sample count, a target and a verdict.
func checkFigureRow(t *testing.T, label string, rows map[string][]string, table string) {
	t.Helper()
	cells, ok := rows[label]
	if !ok {
		t.Errorf("no row %q in the table:\n%s", label, table)
		return
	}
	if len(cells) != 4 {
		t.Errorf("row %q has cells %q, want figure, samples, target, verdict", label, cells)
		return
	}
	fig := cells[0]
	if !benchNumber.MatchString(fig) || strings.Contains(fig, "NaN") || strings.Contains(fig, "Inf") {
		t.Errorf("row %q: figure %q is not numeric", label, fig)
	}
	if !benchNumber.MatchString(cells[1]) {
		t.Errorf("row %q: samples %q has no count", label, cells[1])
	}
	if v := cells[3]; v != "met" && v != "**missed**" && !strings.HasPrefix(v, "—") {
		t.Errorf("row %q: verdict %q, want met, **missed** or —", label, v)
	}
}

// checkCPUTable checks the CPU table has a row per tool and destination count, each with
// wall, copier and registry times in seconds, and no other row.
func checkCPUTable(t *testing.T, cpu map[string][]string, table string) {
	t.Helper()
	for _, dests := range []string{"1 destination", "3 destinations"} {
		for _, tool := range []string{"promoter", "crane", "regctl", "skopeo"} {
			label := tool + ", " + dests
			cells, ok := cpu[label]
			if !ok || len(cells) != 3 {
				t.Errorf("CPU table row %q: %q, want wall, copier and registries", label, cells)
				continue
			}
			for _, c := range cells {
				if !benchSeconds.MatchString(c) {
					t.Errorf("CPU table row %q: %q is not a time in seconds", label, c)
				}
			}
		}
	}
	if len(cpu) != 8 {
		t.Errorf("the CPU table has %d rows, want 8:\n%s", len(cpu), table)
	}
}
