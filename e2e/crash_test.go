package e2e

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// slowProxy fronts a registry, delays every blob upload and counts finished ones, so a
// test can kill the daemon while a promotion is half done.
type slowProxy struct {
	*httptest.Server
	delay    time.Duration
	uploaded atomic.Int64
}

func startSlowProxy(t *testing.T, target string, delay time.Duration) *slowProxy {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0) // the killed daemon's requests fail by design
	rp.ModifyResponse = func(resp *http.Response) error {
		if loc := resp.Header.Get("Location"); loc != "" {
			if lu, err := url.Parse(loc); err == nil && lu.Host == u.Host {
				lu.Scheme, lu.Host = "", ""
				resp.Header.Set("Location", lu.String())
			}
		}
		return nil
	}
	p := &slowProxy{delay: delay}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		finishing := r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/")
		if finishing {
			time.Sleep(p.delay) // the scenario: a slow destination, so the kill lands mid-promotion
		}
		rp.ServeHTTP(w, r)
		if finishing {
			p.uploaded.Add(1)
		}
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *slowProxy) host() string { return strings.TrimPrefix(p.URL, "http://") }

// TestPromotionSurvivesACrash kills the daemon (SIGKILL, embedded JetStream on disk) in the
// middle of promoting a signed index and starts it again: the promotion completes, with
// the same digests and the signatures of the index and both children at the destination,
// none of them twice.
func TestPromotionSurvivesACrash(t *testing.T) {
	bin := buildPromoter(t)
	dir := t.TempDir()
	stagingPort, listenPort := testenv.FreePort(t), testenv.FreePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", listenPort)
	status := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	staging := fmt.Sprintf("127.0.0.1:%d/team/app", stagingPort)
	testenv.StartRegistryAt(t, filepath.Join(dir, "staging"), localregistry.WithPort(stagingPort),
		localregistry.WithNotify("http://"+listen+"/v1/events/registry", notifyHeaders()))
	prod := testenv.StartRegistry(t)
	proxy := startSlowProxy(t, prod.URL, 400*time.Millisecond)
	dest := proxy.host() + "/prod/app"

	keyPath, pubPath := writeKeyPair(t, dir, "pw")
	ciPub, push := ciSigner(t, dir) // CI signs the arch images it pushes
	cfgPath := filepath.Join(dir, "promoter.yaml")
	cfg := newDaemonConfig(t, withListeners(listen, "", status, filepath.Join(dir, "data")), withReconcile("2s"), withSigningKey(keyPath, "pw", pubPath),
		withPipeline(pipelineConfig{
			Name: "app", Platforms: bothArches, Staging: staging,
			Sign: true, Verify: trusting(ciPub), Promote: signedTo(dest),
		}))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	serve := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve", "--config", cfgPath, "--log-level", "debug")
		logf, _ := os.OpenFile(filepath.Join(dir, "daemon.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	d := &runningDaemon{URL: "http://" + listen, Status: "http://" + status, Logs: &syncBuffer{t: t}}
	first := serve()
	d.waitReady(t)

	created := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	push(t, staging+":c1-amd64", bigImage(t, "linux/amd64", created))
	push(t, staging+":c1-arm64", bigImage(t, "linux/arm64", created))

	// Kill the daemon once a few blobs reached the destination, well before all did.
	err := testenv.WaitFor(60*time.Second, func() error {
		if n := proxy.uploaded.Load(); n < 3 {
			return fmt.Errorf("%d blobs uploaded", n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("promotion never started\n%s", readFile(filepath.Join(dir, "daemon.log")))
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	atKill := proxy.uploaded.Load()
	// Each image has a config and 2+4 layers: 14 blobs in all.
	if atKill >= 14 {
		t.Fatalf("killed after all %d blobs were uploaded: too late to test anything", atKill)
	}
	t.Logf("killed the daemon after %d blob uploads", atKill)

	proxy.delay = 0
	serve()
	d.waitReady(t)
	var r *types.Revision
	func() {
		defer func() {
			if t.Failed() {
				t.Logf("daemon log:\n%s", readFile(filepath.Join(dir, "daemon.log")))
			}
		}()
		r = d.waitPhase(t, "app", "c1", 90*time.Second, types.PhasePromoted)
	}()

	// Same index at the destination, signatures verify there, nothing duplicated.
	ctx := context.Background()
	dref, _ := name.ParseReference(dest+":c1", name.Insecure)
	got, err := remote.Head(dref)
	if err != nil || got.Digest.String() != r.Index {
		t.Fatalf("destination holds %v (%v), want %s", got, err, r.Index)
	}
	key, err := sign.LoadVerifier(ctx, pubPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	checked, err := testenv.Verifier(t, key).Verify(ctx, dest+":c1")
	if err != nil || len(checked) != 3 {
		t.Fatalf("verify at the destination: %v %+v", err, checked)
	}
	for _, c := range checked {
		src := referrers(t, staging+"@"+c.Digest)
		dst := referrers(t, dest+"@"+c.Digest)
		if src != dst || src == 0 {
			t.Errorf("%s: %d referrers in staging, %d at the destination", c.Digest, src, dst)
		}
	}
}

// bigImage is an image of platform with four 1 MiB layers: enough blobs for a promotion
// to be interrupted between them.
func bigImage(t *testing.T, platform string, created time.Time) v1.Image {
	t.Helper()
	img := testenv.PlatformImage(t, platform, created)
	for range 4 {
		l, err := random.Layer(1<<20, "application/vnd.oci.image.layer.v1.tar+gzip")
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

func referrers(t *testing.T, ref string) int {
	t.Helper()
	return len(testenv.Referrers(t, ref))
}

func buildPromoter(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "promoter")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/promoter").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
