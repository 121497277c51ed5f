package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// Soak sizes: issue 10 asks for at least 30 kills while at least 20 revisions flow.
const (
	soakKills     = 30
	soakRevisions = 24 // half pushed once, half pushed twice (append, then mutate)
)

// TestKillSoak is the kill soak with promoter signing with a key (keys.cosign), which the
// cosign CLI verifies with its public half.
func TestKillSoak(t *testing.T) {
	killSoak(t, keySoak(t))
}

// soakSigning is how promoter signs during a kill soak and how the soak checks its
// signatures afterwards: keySoak and keylessSoak make one. The CI signer of the arch
// images is a key in either.
type soakSigning struct {
	// mode names the signer in the soak's log line.
	mode string
	// config sets the daemon config's signing section (keys: or sign:).
	config configMod
	// kills and revisions are the soak's size: SIGKILLs, and revisions pushed meanwhile.
	kills, revisions int
	// own counts promoter's own signatures on ref (repo@digest), to be exactly one; nil
	// when the count of all signatures is the check.
	own func(t *testing.T, ref string) int
	// verify runs the cosign CLI on ref, failing t unless it verifies promoter's signature.
	verify func(t *testing.T, ref string)
	// refuse runs the cosign CLI on ref trusting someone else, failing t if it verifies;
	// nil checks nothing.
	refuse func(t *testing.T, ref string)
}

// keySoak signs with a cosign key pair it writes, and verifies with its public key.
func keySoak(t *testing.T) soakSigning {
	t.Helper()
	keyPath, pubPath := writeKeyPair(t, t.TempDir(), "pw")
	cosign := testenv.Tool(t, "cosign")
	return soakSigning{
		mode:   "key",
		config: withSigningKey(keyPath, "pw", pubPath),
		kills:  soakKills, revisions: soakRevisions,
		verify: func(t *testing.T, ref string) { cosignVerify(t, cosign, pubPath, ref) },
	}
}

// killSoak runs the real `promoter serve` binary (embedded JetStream on disk), signing as
// sg says, and kills it with SIGKILL sg.kills times at random moments while sg.revisions
// revisions are pushed, half of them the way `crane append` + `crane mutate` push: first
// an image without a platform, then the same layers with one, under the same tag. CI signs
// each image it pushes with its own key before tagging it, and the merge-only pipeline
// accepts only images that key signed. Afterwards every revision must be promoted to both
// destinations with the digests the staging registry holds, with exactly one signature of
// promoter's per digest that the cosign CLI verifies (the children also carry their one CI
// signature), and none may have been reported conflicted: 0 lost, 0 wrong, 0 duplicate, 0
// false conflicted. A forged notification (another revision's digest) and one naming an
// absent tag, delivered between kills, must change nothing.
func killSoak(t *testing.T, sg soakSigning) {
	s := newSoak(t, sg)
	defer func() {
		if t.Failed() {
			t.Logf("daemon log (last 200 lines):\n%s", lastLines(readFile(s.logPath), 200))
		}
	}()

	// Push while the daemon is killed again and again.
	pushed := s.pushRevisions(t)
	lies := s.prepareLies(t)
	start := time.Now()
	for kill := 0; kill < sg.kills; kill++ {
		cmd := s.serve(t)
		s.d.waitReady(t)
		if kill >= 5 {
			lies = s.tellLie(t, lies)
		}
		time.Sleep(time.Duration(200+rand.IntN(1300)) * time.Millisecond) // the scenario: a random moment to kill at
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
	}
	revs := pushed()
	killed := time.Since(start)
	if len(lies) > 0 {
		t.Fatalf("%d forged notifications were never accepted", len(lies))
	}
	realF00 := testenv.PlatformImage(t, "linux/amd64", s.created)
	s.signedPush(t, s.staging+":f00-amd64", realF00)

	final := s.serve(t)
	t.Cleanup(func() { _ = final.Process.Kill(); _ = final.Wait() })
	s.d.waitReady(t)
	tally := &soakTally{start: time.Now()}
	for _, rev := range revs {
		s.checkRevision(t, tally, rev)
	}
	// The lies changed nothing: f00 holds its real amd64 image, a00 is not merged.
	s.checkLiesIgnored(t, tally, testenv.Digest(t, realF00))
	t.Logf("kill soak, %s signing: %d SIGKILLs over %s while %d revisions were pushed (%d pushed twice: append then mutate); "+
		"a forged notification and one for an absent tag were accepted mid-soak; "+
		"after the last restart every revision settled within %s; lost %d, wrong %d, duplicate signatures %d, false conflicted %d",
		sg.mode, sg.kills, killed.Round(time.Millisecond), len(revs), len(revs)/2, tally.slowest.Round(time.Millisecond),
		tally.lost, tally.wrong, tally.dup, tally.falseConflict)
	if keep := os.Getenv("PROMOTER_SOAK_LOG"); keep != "" {
		_ = os.WriteFile(keep, []byte(readFile(s.logPath)), 0o644)
	}
	t.Logf("signatures: %d digests (indexes and children at staging and both destinations) carry %d in all; "+
		"each index wants 1, each child 2 (promoter's and CI's)", tally.digests, tally.all)
	if sg.own != nil {
		t.Logf("promoter's own signatures on those %d digests: %d", tally.digests, tally.own)
	}
	t.Logf("retried handler failures by kind:\n%s", failureKinds(readFile(s.logPath)))
	s.verifyWithCosign(t, revs)
}

// soak is a kill soak's setup: the promoter binary and its config, the staging registry
// and two destinations, and the daemon's address, which each start of the binary takes.
type soak struct {
	sg               soakSigning
	bin              string
	cfgPath, logPath string
	// staging is the pipeline's repository in staging; dests its two destinations.
	staging    string
	dests      []string
	signedPush signedPush // CI's: it signs the arch images it pushes
	created    time.Time
	// d reaches whichever process of the binary is running.
	d *runningDaemon
	// s00 is revision s00's amd64 arch tag, whose digest the forged notification names.
	s00 string
}

// newSoak builds the binary, starts the registries and writes the config of a daemon that
// runs a merge-only pipeline trusting CI's key, signs as sg says and promotes to both
// destinations.
func newSoak(t *testing.T, sg soakSigning) *soak {
	t.Helper()
	dir := t.TempDir()
	s := &soak{sg: sg, bin: buildPromoter(t), cfgPath: filepath.Join(dir, "promoter.yaml"), logPath: filepath.Join(dir, "daemon.log"),
		created: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	stagingPort, listenPort := testenv.FreePort(t), testenv.FreePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", listenPort)
	status := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s.staging = fmt.Sprintf("127.0.0.1:%d/team/app", stagingPort)
	s.s00 = s.staging + ":" + types.ArchTag(types.DefaultArchTag).Render("s00", types.MustPlatform("linux/amd64"))
	testenv.StartRegistryAt(t, filepath.Join(dir, "staging"), localregistry.WithPort(stagingPort),
		localregistry.WithNotify("http://"+listen+"/v1/events/registry", notifyHeaders()))
	s.dests = []string{testenv.StartRegistry(t).Host + "/prod/app", testenv.StartRegistry(t).Host + "/prod/app"}
	var ciPub string
	ciPub, s.signedPush = ciSigner(t, dir) // CI signs the arch images it pushes
	// reconcileInterval is long: recovery must come from redelivery and the reconcile that
	// runs at each start, not from a periodic sweep.
	cfg := newDaemonConfig(t, withListeners(listen, "", status, filepath.Join(dir, "data")), withReconcile("1h"), sg.config,
		withPipeline(pipelineConfig{
			Name: "app", Platforms: bothArches, Staging: s.staging,
			Sign: true, Verify: trusting(ciPub), Promote: signedTo(s.dests[0], s.dests[1]),
		}))
	if err := os.WriteFile(s.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.d = &runningDaemon{URL: "http://" + listen, Status: "http://" + status, Logs: &syncBuffer{t: t}}
	return s
}

// serve starts the binary, its output appended to the soak's log.
func (s *soak) serve(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(s.bin, "serve", "--config", s.cfgPath, "--log-level", "debug")
	logf, _ := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// pushRevisions pushes sg.revisions revisions in the background at CI's pace, every
// second one twice (append, then mutate); the function it returns waits for the last push
// and returns the revisions pushed, in order.
func (s *soak) pushRevisions(t *testing.T) func() []string {
	var pushed []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range s.sg.revisions {
			rev := fmt.Sprintf("s%02d", i)
			s.pushRevision(t, rev, i%2 == 1)
			pushed = append(pushed, rev)
			time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond) // the scenario: CI's pace
		}
	}()
	return func() []string {
		<-done
		return pushed
	}
}

// pushRevision pushes rev's two arch images, signed by CI; twice, when double, the way
// `crane append` + `crane mutate` push: without a platform, then with it.
func (s *soak) pushRevision(t *testing.T, rev string, double bool) {
	t.Helper()
	for _, pl := range []string{"linux/amd64", "linux/arm64"} {
		tag := s.staging + ":" + types.ArchTag(types.DefaultArchTag).Render(rev, types.MustPlatform(pl))
		if double {
			bare, final := testenv.AppendThenMutate(t, pl, s.created)
			s.signedPush(t, tag, bare)
			s.signedPush(t, tag, final)
		} else {
			s.signedPush(t, tag, testenv.PlatformImage(t, pl, s.created))
		}
	}
}

// soakLie is a notification that lies: rev's amd64 arch tag "has" digest ("": the digest
// of s00's amd64 image, once it is pushed).
type soakLie struct{ rev, digest string }

// prepareLies pushes what the two lying notifications need and returns them:
//   - forged: revision f00's amd64 tag "has" the digest of s00's amd64 image. f00's real
//     amd64 image is pushed at the end; the index must hold that one.
//   - absent: revision a00's amd64 tag "has" a manifest staging holds by digest only, as
//     after the tag was deleted. a00 must stay unmerged.
func (s *soak) prepareLies(t *testing.T) []soakLie {
	t.Helper()
	s.signedPush(t, s.staging+":f00-arm64", testenv.PlatformImage(t, "linux/arm64", s.created))
	s.signedPush(t, s.staging+":a00-arm64", testenv.PlatformImage(t, "linux/arm64", s.created))
	untagged := testenv.PlatformImage(t, "linux/amd64", s.created)
	testenv.Push(t, s.staging+"@"+testenv.Digest(t, untagged), untagged)
	return []soakLie{{"f00", ""}, {"a00", testenv.Digest(t, untagged)}}
}

// tellLie delivers the first of lies to the running daemon and returns the rest once the
// daemon has acknowledged it, or lies as they were (it may be killed before it answers;
// the next start tries again).
func (s *soak) tellLie(t *testing.T, lies []soakLie) []soakLie {
	t.Helper()
	if len(lies) == 0 {
		return lies
	}
	if lies[0].digest == "" {
		lies[0].digest = headDigest(t, s.s00) // pushed by now
	}
	if lies[0].digest != "" && notifyLie(t, s.d.URL, s.staging, lies[0].rev, lies[0].digest) {
		return lies[1:]
	}
	return lies
}

// soakTally counts what a kill soak found wrong once the daemon ran again, and the
// signatures it checked.
type soakTally struct {
	// start is when the last start of the daemon was ready; slowest how long after it the
	// last revision settled.
	start                           time.Time
	slowest                         time.Duration
	lost, wrong, dup, falseConflict int
	digests, all, own               int // signed digests checked; their signatures; promoter's
}

// checkRevision waits for rev to settle and checks that it was promoted, that its index
// holds what staging holds under its arch tags now, that both destinations hold that
// index, and that each of its digests carries its signatures in staging and at each
// destination.
func (s *soak) checkRevision(t *testing.T, tl *soakTally, rev string) {
	t.Helper()
	r := s.d.waitPhase(t, "app", rev, 3*time.Minute, types.PhasePromoted, types.PhaseConflicted, types.PhaseFailed)
	tl.slowest = max(tl.slowest, time.Since(tl.start))
	switch r.Phase {
	case types.PhaseConflicted:
		tl.falseConflict++
		t.Errorf("%s: conflicted although nothing moved a merged tag: %s", rev, r.Reason)
		return
	case types.PhaseFailed:
		tl.lost++
		t.Errorf("%s: failed: %s", rev, r.Reason)
		return
	}
	// The index holds what the staging registry holds under the arch tags now.
	children := testenv.IndexChildren(t, s.staging+":"+rev)
	for _, pl := range []string{"linux/amd64", "linux/arm64"} {
		tag := types.ArchTag(types.DefaultArchTag).Render(rev, types.MustPlatform(pl))
		if want := headDigest(t, s.staging+":"+tag); children[pl] != want {
			tl.wrong++
			t.Errorf("%s: index holds %s for %s, staging %s holds %s", rev, children[pl], pl, tag, want)
		}
	}
	index := headDigest(t, s.staging+":"+rev)
	if r.Index != index {
		tl.wrong++
		t.Errorf("%s: state says index %s, staging holds %s", rev, r.Index, index)
	}
	for _, dst := range s.dests {
		if got := headDigest(t, dst+":"+rev); got != index {
			tl.lost++
			t.Errorf("%s: %s holds %q, want %s", rev, dst, got, index)
			continue
		}
		for dg, want := range signatures(index, children) {
			s.checkSignatures(t, tl, rev, dst+"@"+dg, want)
		}
	}
	for dg, want := range signatures(index, children) {
		s.checkSignatures(t, tl, rev, s.staging+"@"+dg, want)
	}
}

// checkSignatures checks that ref, a digest of rev, carries want signatures and, where
// sg.own tells promoter's apart, exactly one of promoter's.
func (s *soak) checkSignatures(t *testing.T, tl *soakTally, rev, ref string, want int) {
	t.Helper()
	tl.digests++
	n := referrers(t, ref)
	tl.all += n
	if n != want {
		tl.dup++
		t.Errorf("%s: %s has %d signatures, want exactly %d", rev, ref, n, want)
	}
	if s.sg.own == nil {
		return
	}
	n = s.sg.own(t, ref)
	tl.own += n
	if n != 1 {
		tl.dup++
		t.Errorf("%s: %s has %d signatures of promoter's, want exactly 1", rev, ref, n)
	}
}

// checkLiesIgnored checks that the lies changed nothing: f00 was promoted with its real
// amd64 image, realF00, and a00, whose amd64 tag never existed, is not merged.
func (s *soak) checkLiesIgnored(t *testing.T, tl *soakTally, realF00 string) {
	t.Helper()
	if r := s.d.waitPhase(t, "app", "f00", 3*time.Minute, types.PhasePromoted, types.PhaseConflicted, types.PhaseFailed); r.Phase != types.PhasePromoted {
		tl.wrong++
		t.Errorf("f00: %s (%s), want promoted", r.Phase, r.Reason)
	} else if got := testenv.IndexChildren(t, s.staging+":f00")["linux/amd64"]; got != realF00 {
		tl.wrong++
		t.Errorf("f00 was merged with %s for linux/amd64, want its real image %s (the forged notification named %s)", got, realF00, headDigest(t, s.s00))
	}
	if r := s.d.revision(t, "app", "a00"); r != nil && (r.Index != "" || r.Phase != types.PhaseWaiting) {
		tl.wrong++
		t.Errorf("a00: %s index %q, want waiting without an index: its amd64 tag does not exist", r.Phase, r.Index)
	}
	if headDigest(t, s.staging+":a00") != "" {
		tl.wrong++
		t.Errorf("a00 has an index in staging")
	}
}

// verifyWithCosign has the cosign CLI verify the index and both children of every one of
// revs at each destination (about 0.1 s a call), and refuse a signer that is not promoter
// once.
func (s *soak) verifyWithCosign(t *testing.T, revs []string) {
	t.Helper()
	verifyStart, verified := time.Now(), 0
	for _, rev := range revs {
		index := headDigest(t, s.staging+":"+rev)
		children := testenv.IndexChildren(t, s.staging+":"+rev)
		for _, dst := range s.dests {
			for _, dg := range []string{index, children["linux/amd64"], children["linux/arm64"]} {
				s.sg.verify(t, dst+"@"+dg)
				verified++
			}
		}
	}
	if s.sg.refuse != nil {
		s.sg.refuse(t, s.dests[0]+"@"+headDigest(t, s.staging+":"+revs[0]))
	}
	t.Logf("the cosign CLI verified %d digests (%d revisions at %d destinations) in %s",
		verified, len(revs), len(s.dests), time.Since(verifyStart).Round(time.Millisecond))
}

// signatures is how many signatures each digest of a merged revision carries: promoter's
// one on the index, and on each child promoter's and the one CI signed it with.
func signatures(index string, children map[string]string) map[string]int {
	return map[string]int{index: 1, children["linux/amd64"]: 2, children["linux/arm64"]: 2}
}

// headDigest is what ref points at now, or "" when it does not exist.
func headDigest(t *testing.T, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(r)
	if err != nil {
		return ""
	}
	return d.Digest.String()
}

// cosignVerify runs the real cosign CLI offline against ref with the public key.
func cosignVerify(t *testing.T, cosign, pub, ref string) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.CommandContext(context.Background(), cosign, "verify", "--key", pub, "--insecure-ignore-tlog", ref)
	cmd.Env = append(os.Environ(), "HOME="+home, "TUF_ROOT="+filepath.Join(home, "tuf"),
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("cosign verify %s: %v\n%s", ref, err, out)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// failureKinds tallies the daemon's "handler failed, will retry" log lines by consumer and
// the start of the error, so a soak's output says what went wrong while it was killed.
func failureKinds(log string) string {
	counts := map[string]int{}
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "handler failed") {
			continue
		}
		consumer, errText := field(line, "consumer="), field(line, "error=")
		if i := strings.Index(errText, ": claimed by"); i >= 0 {
			errText = errText[:i] // one line for every lease of a killed process
		}
		if len(errText) > 90 {
			errText = errText[:90]
		}
		counts[consumer+": "+errText]++
	}
	var b strings.Builder
	for k, n := range counts {
		fmt.Fprintf(&b, "  %4d  %s\n", n, k)
	}
	return b.String()
}

// field is the value of key in a logfmt line (quoted or not).
func field(line, key string) string {
	i := strings.Index(line, key)
	if i < 0 {
		return ""
	}
	v := line[i+len(key):]
	if strings.HasPrefix(v, `"`) {
		end := strings.Index(v[1:], `"`)
		if end < 0 {
			return v[1:]
		}
		return v[1 : end+1]
	}
	if end := strings.IndexByte(v, ' '); end >= 0 {
		return v[:end]
	}
	return v
}

// notifyLie posts, as the registry would, a push notification claiming that rev's amd64 arch
// tag points at digest. It reports whether the daemon acknowledged it (it may be killed
// before it answers; the caller tries again after the next start).
func notifyLie(t *testing.T, daemonURL, staging, rev, digest string) bool {
	t.Helper()
	repo := strings.SplitN(staging, "/", 2)
	body, err := json.Marshal(map[string]any{"events": []map[string]any{{
		"id": "lie-" + rev, "timestamp": time.Now().UTC(), "action": "push",
		"target": map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 500,
			"repository": repo[1], "tag": rev + "-amd64",
		},
		"request": map[string]any{"host": repo[0], "method": "PUT"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	h := notifyHeaders()
	h.Set("Content-Type", "application/vnd.docker.distribution.events.v2+json")
	status, err := forward(daemonURL+"/v1/events/registry", h, body)
	return err == nil && status == 200
}
