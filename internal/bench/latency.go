package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/promoter-dev/promoter/internal/sign"
)

const (
	registryToken = "bench-registry-token"
	keyPassword   = "bench"
	appRepo       = "bench/app"
	ingestRepo    = "bench/ingest"
)

// daemonConfig is the daemon's configuration: a merge-only pipeline signed with the run's
// key and promoted, signature required, to one destination; and a pipeline whose staging
// repository only the ingest measurement names. The bench's arch images are its own, so
// the app pipeline accepts them unverified: the latency measured is the chain's, not a
// verify policy's.
func daemonConfig(staging, dest, key string) string {
	return fmt.Sprintf(`auth:
  registryToken: %s
keys:
  cosign: %s
  password: %s
reconcileInterval: 1h
pipelines:
  - name: app
    platforms: [linux/amd64, linux/arm64]
    staging: %s/%s
    sign: true
    verify: {acceptUnverified: true}
    promote:
      - to: %s/%s
        requireSignature: true
  - name: ingest
    platforms: [linux/amd64, linux/arm64]
    staging: %s/%s
`, registryToken, key, keyPassword, staging, appRepo, dest, appRepo, staging, ingestRepo)
}

// runDaemonPhase runs the measurements that need `promoter serve`: the latencies, then
// the ingest. The daemon is stopped before the copies, so it takes no CPU from them.
func (e *env) runDaemonPhase(ctx context.Context, rep *Report, dataDir string) error {
	priv, pub, err := sign.GenerateKeyPair([]byte(keyPassword))
	if err != nil {
		return fmt.Errorf("generating the run's cosign key: %w", err)
	}
	keyPath, pubPath := filepath.Join(e.work, "cosign.key"), filepath.Join(e.work, "cosign.pub")
	if err := os.WriteFile(keyPath, priv, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		return err
	}
	daemonPort, err := freePort()
	if err != nil {
		return err
	}
	daemonURL := fmt.Sprintf("http://127.0.0.1:%d", daemonPort)
	staging, err := startRegistry(ctx, e.cfg.Tools.Registry, e.storage, 0, []notifyEndpoint{
		{Name: "promoter", URL: daemonURL + "/v1/events/registry", Token: registryToken},
		e.watch.endpoint("staging"),
	})
	if err != nil {
		return err
	}
	defer staging.Close()
	dest, err := startRegistry(ctx, e.cfg.Tools.Registry, e.storage, 0, []notifyEndpoint{e.watch.endpoint("dest")})
	if err != nil {
		return err
	}
	defer dest.Close()
	cfgYAML, opsPort := daemonConfig(staging.Host, dest.Host, keyPath), 0
	if e.cfg.ProfileDir != "" {
		if opsPort, err = freePort(); err != nil {
			return err
		}
		cfgYAML += "pprof: true\n"
	}
	e.logf("starting promoter serve")
	d, err := startDaemon(ctx, e.promoter, e.work, dataDir, daemonPort, opsPort, cfgYAML)
	if err != nil {
		return err
	}
	defer d.Close()
	var profiled <-chan error
	if e.cfg.ProfileDir != "" {
		profiled = e.startProfile(ctx, d, "latency.pprof")
	}

	if rep.Index, rep.Promoted, err = e.latencies(ctx, d, staging.Host, dest.Host, pubPath); err != nil {
		return err
	}
	if profiled != nil {
		if err := <-profiled; err != nil {
			return err
		}
	}
	for _, n := range e.cfg.IngestSenders {
		e.logf("ingest: %d concurrent senders, %d events", n, e.cfg.IngestEvents)
		r, err := ingest(ctx, d.URL, staging.Host, n, e.cfg.IngestEvents, 0)
		if err != nil {
			return fmt.Errorf("ingest with %d senders: %w\n%s", n, err, d.LogTail(20))
		}
		rep.Ingest = append(rep.Ingest, r)
		if e.cfg.ProfileDir == "" {
			continue
		}
		err = e.profileWhile(ctx, d, fmt.Sprintf("ingest-%d.pprof", n), func(round int) error {
			_, err := ingest(ctx, d.URL, staging.Host, n, e.cfg.IngestEvents, 1+round)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// latencies pushes cfg.Revisions revisions, one after another, each its two arch tags
// (linux/amd64, then linux/arm64, the last push), and waits for its index in staging and
// its tag at the destination. Both intervals are between registry timestamps (see
// watcher): from the staging registry's event of the last arch push to its event of the
// index tag, and to the destination registry's event of the revision tag, which the
// promotion writes last, after the children and signatures.
func (e *env) latencies(ctx context.Context, d *daemonProc, staging, dest, pubPath string) (index, promoted Summary, err error) {
	n := e.cfg.Revisions
	e.logf("latency: building %d revisions", n)
	type pair struct{ amd, arm v1.Image }
	imgs := make([]pair, n)
	for i := range imgs {
		if imgs[i].amd, err = tinyImage("amd64"); err != nil {
			return index, promoted, err
		}
		if imgs[i].arm, err = tinyImage("arm64"); err != nil {
			return index, promoted, err
		}
	}
	var toIndex, toPromoted []time.Duration
	var lastRef string
	for i, p := range imgs {
		rev := fmt.Sprintf("%040x", 0xbe0c0000+i)
		repo := staging + "/" + appRepo
		if err := e.cl.push(ctx, repo+":"+rev+"-amd64", p.amd); err != nil {
			return index, promoted, err
		}
		if err := e.cl.push(ctx, repo+":"+rev+"-arm64", p.arm); err != nil {
			return index, promoted, err
		}
		last, err := e.watch.wait(ctx, "staging", appRepo, rev+"-arm64", e.cfg.RevisionTimeout)
		if err != nil {
			return index, promoted, err
		}
		idx, err := e.watch.wait(ctx, "staging", appRepo, rev, e.cfg.RevisionTimeout)
		if err != nil {
			return index, promoted, fmt.Errorf("revision %d: %w\ndaemon log:\n%s", i, err, d.LogTail(20))
		}
		prom, err := e.watch.wait(ctx, "dest", appRepo, rev, e.cfg.RevisionTimeout)
		if err != nil {
			return index, promoted, fmt.Errorf("revision %d: %w\ndaemon log:\n%s", i, err, d.LogTail(20))
		}
		if prom.Digest != idx.Digest {
			return index, promoted, fmt.Errorf("revision %s: destination has %s, staging's index is %s", rev, prom.Digest, idx.Digest)
		}
		if i >= e.cfg.Warmup {
			toIndex = append(toIndex, idx.At.Sub(last.At))
			toPromoted = append(toPromoted, prom.At.Sub(last.At))
		}
		if (i+1)%100 == 0 {
			e.logf("latency: %d/%d revisions", i+1, n)
		}
		lastRef = dest + "/" + appRepo + "@" + prom.Digest
	}
	// The promoted index is signed: the cosign CLI verifies the last one at the destination.
	if err := cosignVerify(ctx, e.cfg.Tools.Cosign, pubPath, lastRef, e.work); err != nil {
		return index, promoted, err
	}
	return Summarize(toIndex), Summarize(toPromoted), nil
}

// cosignVerify runs `cosign verify` offline (no transparency log, no TUF, no network).
func cosignVerify(ctx context.Context, cosign, pub, ref, work string) error {
	home := filepath.Join(work, "cosign-home")
	cmd := exec.CommandContext(ctx, cosign, "verify", "--key", pub, "--insecure-ignore-tlog", ref)
	cmd.Env = append(os.Environ(), "HOME="+home, "TUF_ROOT="+filepath.Join(home, "tuf"),
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cosign verify %s: %w\n%s", ref, err, strings.TrimSpace(string(out)))
	}
	return nil
}
