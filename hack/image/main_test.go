package main

import (
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// workflow is the part of a GitHub Actions workflow the release test reads.
type workflow struct {
	On trigger `json:"on"`
	// OnAsBool is the same key: YAML 1.1, which sigs.k8s.io/yaml reads, takes a bare on
	// for the boolean true.
	OnAsBool trigger                `json:"true"`
	Jobs     map[string]workflowJob `json:"jobs"`
}

// workflowJob is one job of a workflow.
type workflowJob struct {
	RunsOn      string            `json:"runs-on"`
	Permissions map[string]string `json:"permissions"`
	Strategy    struct {
		Matrix struct {
			Include []map[string]string `json:"include"`
		} `json:"matrix"`
	} `json:"strategy"`
	Steps []struct {
		Uses string `json:"uses"`
		Run  string `json:"run"`
	} `json:"steps"`
}

type trigger struct {
	Push struct {
		Tags []string `json:"tags"`
	} `json:"push"`
}

// TestReleaseWorkflow reads .github/workflows/release.yml and checks what issue 25 asks of
// it: on a tag push, a job per architecture on a runner of that architecture builds with
// hack/image.sh (flags this command accepts), pushes by digest, signs each digest keyless,
// then tags; promoter does the rest.
func TestReleaseWorkflow(t *testing.T) {
	b, err := os.ReadFile("../../.github/workflows/release.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf workflow
	if err := yaml.Unmarshal(b, &wf); err != nil {
		t.Fatalf("release.yml is not YAML: %v", err)
	}
	if len(wf.On.Push.Tags) == 0 && len(wf.OnAsBool.Push.Tags) == 0 {
		t.Error("release.yml does not run on a tag push (on.push.tags)")
	}
	built := map[string]bool{}
	for name, job := range wf.Jobs {
		calls := imageCalls(job)
		if len(calls) == 0 {
			continue
		}
		if job.Permissions["id-token"] != "write" || job.Permissions["packages"] != "write" {
			t.Errorf("job %s: permissions %v, want id-token: write (keyless signing) and packages: write", name, job.Permissions)
		}
		if len(job.Strategy.Matrix.Include) == 0 {
			t.Errorf("job %s has no matrix of platforms", name)
		}
		for _, m := range job.Strategy.Matrix.Include {
			checkMatrixEntry(t, name, calls, m)
			built[m["platform"]] = true
		}
		checkSignedBetween(t, name, job)
	}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		if !built[p] {
			t.Errorf("no job builds %s with hack/image.sh", p)
		}
	}
}

// imageCalls are the arguments of each hack/image.sh call in job's steps.
func imageCalls(job workflowJob) [][]string {
	var calls [][]string
	for _, s := range job.Steps {
		for _, line := range strings.Split(s.Run, "\n") {
			if args, ok := imageArgs(line); ok {
				calls = append(calls, args)
			}
		}
	}
	return calls
}

// checkMatrixEntry checks job name's calls for matrix entry m: on a runner of m's
// platform, a build of that platform by digest with a report, then a tag from that report.
func checkMatrixEntry(t *testing.T, name string, calls [][]string, m map[string]string) {
	t.Helper()
	platform, runner := m["platform"], m["runner"]
	if strings.HasSuffix(platform, "/arm64") != strings.Contains(runner, "arm") {
		t.Errorf("job %s: %s runs on %s, want a runner of that architecture", name, platform, runner)
	}
	expand := strings.NewReplacer("${{ matrix.platform }}", platform)
	var build, tag *flags
	order := map[string]int{}
	for i, call := range calls {
		args := make([]string, len(call))
		for j, a := range call {
			args[j] = expand.Replace(a)
		}
		f, err := parse(args, io.Discard)
		if err != nil {
			t.Errorf("job %s: hack/image.sh %s: %v", name, strings.Join(args, " "), err)
			continue
		}
		switch {
		case f.noTag:
			build, order["build"] = f, i
		case f.tagFrom != "":
			tag, order["tag"] = f, i
		}
	}
	if build == nil || tag == nil {
		t.Fatalf("job %s: want a hack/image.sh --no-tag --report FILE (push by digest) and a --tag-from FILE; got %q", name, calls)
	}
	if build.platforms != platform {
		t.Errorf("job %s: builds --platforms %q on the %s runner, want %q", name, build.platforms, runner, platform)
	}
	if build.report == "" || build.report != tag.tagFrom || order["build"] > order["tag"] {
		t.Errorf("job %s: --report %q then --tag-from %q: want the same file, the build first", name, build.report, tag.tagFrom)
	}
}

// checkSignedBetween checks that job name signs each digest keyless, between the push
// by digest and the tag.
func checkSignedBetween(t *testing.T, name string, job workflowJob) {
	t.Helper()
	var signed bool
	var signAt, buildAt, tagAt int
	for i, s := range job.Steps {
		switch {
		case strings.Contains(s.Run, "cosign sign") && strings.Contains(s.Run, "@$digest"):
			signed, signAt = true, i
			if strings.Contains(s.Run, "--key") {
				t.Errorf("job %s signs with a key; want keyless (the workflow's identity)", name)
			}
		case strings.Contains(s.Run, "--no-tag"):
			buildAt = i
		case strings.Contains(s.Run, "--tag-from"):
			tagAt = i
		}
	}
	if !signed || !(buildAt < signAt && signAt < tagAt) {
		t.Errorf("job %s: want steps push by digest (%d) < cosign sign REPO@digest (%d) < tag (%d)", name, buildAt, signAt, tagAt)
	}
}

// imageArgs returns the arguments of a hack/image.sh call on a shell line.
func imageArgs(line string) ([]string, bool) {
	words := shellWords(line)
	for i, w := range words {
		if strings.HasSuffix(w, "hack/image.sh") {
			return slices.Clone(words[i+1:]), true
		}
	}
	return nil, false
}

// shellWords splits a shell line into words: blanks separate, quotes group (no escapes,
// no expansion; enough for a workflow's run lines).
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	var quote rune
	inWord := false
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    flags
		wantErr error  // the rule broken
		wantMsg string // part of the message, which says what to fix
	}{
		{name: "repository only", args: []string{"r.example/p"}, want: flags{repo: "r.example/p"}},
		{name: "tag and index", args: []string{"--index", "r.example/p", "v1"}, want: flags{repo: "r.example/p", tag: "v1", index: true}},
		{name: "no repository", args: nil, wantErr: errUsage, wantMsg: "want REGISTRY/REPO"},
		{name: "tag-from with a tag", args: []string{"--tag-from", "p.json", "r.example/p", "v1"}, wantErr: errUsage, wantMsg: "--tag-from only tags"},
		{name: "index by digest", args: []string{"--no-tag", "--index", "r.example/p"}, wantErr: errUsage, wantMsg: "cannot go with --no-tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := parse(tt.args, io.Discard)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("got %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.repo != tt.want.repo || f.tag != tt.want.tag || f.index != tt.want.index || f.platforms != "linux/amd64,linux/arm64" {
				t.Errorf("got %+v, want %+v with the default platforms", *f, tt.want)
			}
		})
	}
}
