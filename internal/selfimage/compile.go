package selfimage

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/promoter-dev/promoter/internal/types"
)

// mainPackage is what is compiled, relative to the module root.
const mainPackage = "./cmd/promoter"

// versionVar is the variable `promoter version` prints (cmd/promoter/version.go); the
// commit it prints comes from the build info's vcs.revision, which go build stamps.
const versionVar = "main.version"

// binary is one compiled promoter and what its build info says about it.
type binary struct {
	path     string
	platform types.Platform
	info     *debug.BuildInfo
}

// setting returns a build setting of the binary (vcs.revision, vcs.time, ...), or "".
func (b binary) setting(key string) string {
	for _, s := range b.info.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// revision is the commit the binary was built from, as `promoter version` prints it:
// vcs.revision, with "-dirty" when the work tree had changes.
func (b binary) revision() string {
	r := b.setting("vcs.revision")
	if r != "" && b.setting("vcs.modified") == "true" {
		r += "-dirty"
	}
	return r
}

// commitTime is the commit's time from the build info, or the zero time.
func (b binary) commitTime() time.Time {
	t, err := time.Parse(time.RFC3339, b.setting("vcs.time"))
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// compile builds mainPackage of the module in dir for p into out, static and reproducible:
// no cgo, -trimpath, no symbol tables, version stamped with -X.
func compile(ctx context.Context, dir, out, version string, p types.Platform) (binary, error) {
	bin := filepath.Join(out, "promoter-"+strings.ReplaceAll(p.String(), "/", "-"))
	ldflags := "-s -w"
	if version != "" {
		ldflags += " -X " + versionVar + "=" + version
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=true", "-ldflags", ldflags, "-o", bin, mainPackage)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture, "GOFLAGS=-mod=readonly")
	if v := goVariantEnv(p); v != "" {
		cmd.Env = append(cmd.Env, v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return binary{}, fmt.Errorf("go build %s for %s: %w\n%s", mainPackage, p, err, stderr.String())
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return binary{}, fmt.Errorf("reading the build info of %s: %w", bin, err)
	}
	return binary{path: bin, platform: p, info: info}, nil
}

// goVariantEnv maps a platform variant to the Go environment variable that selects it.
func goVariantEnv(p types.Platform) string {
	switch {
	case p.Architecture == "arm" && p.Variant != "":
		return "GOARM=" + strings.TrimPrefix(p.Variant, "v")
	case p.Architecture == "amd64" && p.Variant != "":
		return "GOAMD64=" + p.Variant
	}
	return ""
}

// describe is `git describe --tags --always --dirty` in dir: the version stamped into a
// binary when the caller names none. Empty when dir is not a git work tree.
func describe(ctx context.Context, dir string) string {
	cmd := exec.CommandContext(ctx, "git", "describe", "--tags", "--always", "--dirty")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
