package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// pwned is the failure message's payload: the script sets the global, which must stay unset.
const pwned = "<script>window.pwned=1</script>"

// TestStatusPageInABrowser drives the status page in headless chromium against a daemon
// with real registries: three pipelines (one built by the local executor, signed and
// promoted to two destinations; one merge-only whose arch tags the test pushes; one whose
// build fails with a message holding a <script> element). The page, opened once with the
// status token, shows each revision appear and move through its phases without a reload,
// each merged platform shows why its image was accepted (built by promoter, or unverified),
// a revision's detail timeline has every step, the filters work, the <script> renders as
// text and never runs, and a screenshot is written (PROMOTER_SCREENSHOT, or the test's
// artifact directory).
func TestStatusPageInABrowser(t *testing.T) {
	p := startStatusPageDaemon(t)
	browser := startBrowser(t)

	t.Run("the webhook listener serves no page", func(t *testing.T) { p.checkWebhookListener(t, browser) })

	// The page, opened once: the token prompt, then the live list.
	run(t, browser, "open the page", chromedp.Navigate(p.d.Status+"/"))
	waitJS(t, browser, "the token prompt", `!document.getElementById('login').hidden`)
	run(t, browser, "enter the token",
		chromedp.SendKeys(chromedp.CSS("#token"), statusToken), chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)))
	waitJS(t, browser, "the live stream", `document.getElementById('live').classList.contains('on')`)
	// Set once; a reload would lose it (checkSamePage).
	run(t, browser, "mark the page", chromedp.Evaluate[chromedp.Void](`window.samePage = 'yes'`))

	t.Run("a revision appears and moves through its phases live", func(t *testing.T) { p.checkLivePhases(t, browser) })
	t.Run("the detail timeline shows every step", func(t *testing.T) { p.checkTimeline(t, browser) })
	t.Run("a failure message holding a script renders as text", func(t *testing.T) { p.checkScriptAsText(t, browser) })
	t.Run("the filters work", func(t *testing.T) { p.checkFilters(t, browser) })
	t.Run("a screenshot is written", func(t *testing.T) { screenshot(t, browser, "status-page.png") })
}

// statusPage is TestStatusPageInABrowser's daemon and registries: pipeline app is built by
// the local executor, signed and promoted to prod and mirror; ci is merge-only, its arch
// tags pushed by the test to ci; broken's build fails with a message holding pwned.
type statusPage struct {
	d *runningDaemon
	// prod and mirror are the destination registries' host and first path element.
	prod, mirror string
	// ci is pipeline ci's staging repository.
	ci      string
	created time.Time
}

// startStatusPageDaemon starts the registries and the daemon, with the status token, of
// TestStatusPageInABrowser.
func startStatusPageDaemon(t *testing.T) *statusPage {
	t.Helper()
	dir := t.TempDir()
	stagingPort := testenv.FreePort(t)
	stagingHost := fmt.Sprintf("127.0.0.1:%d", stagingPort)
	prod, mirror := testenv.StartRegistry(t).Host+"/prod", testenv.StartRegistry(t).Host+"/mirror"
	keyPath, _ := writeKeyPair(t, dir, "pw")
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "index.html"), []byte("<p>hello</p>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A source tree that does not exist, named so that the build's failure message holds
	// the script element.
	missing := filepath.Join(dir, pwned)

	d := startDaemon(t, newDaemonConfig(t, withAuth("statusToken", statusToken), withToken("generic", "gen"), withSigningKey(keyPath, "pw"),
		withBuilder("", 1), withReconcile("1h"),
		withPipeline(pipelineConfig{
			Name: "app", Source: &sourceConfig{Repo: "https://git.example/team/app"}, Platforms: []string{"linux/amd64"},
			Build: &buildConfig{Executor: "local", Dir: src}, Staging: stagingHost + "/team/app", Sign: true,
			Promote: []promoteConfig{{To: prod + "/app", RequireSignature: true}, {To: mirror + "/app"}},
		}),
		withPipeline(pipelineConfig{
			Name: "ci", Platforms: bothArches, Staging: stagingHost + "/team/ci", Promote: []promoteConfig{{To: prod + "/ci"}},
		}),
		withPipeline(pipelineConfig{
			Name: "broken", Source: &sourceConfig{Repo: "https://git.example/team/broken"}, Platforms: []string{"linux/amd64"},
			Build: &buildConfig{Executor: "local", Dir: missing}, Staging: stagingHost + "/team/broken",
		})))
	// Started after the daemon, whose address it notifies.
	testenv.StartRegistry(t, localregistry.WithPort(stagingPort), localregistry.WithNotify(d.URL+"/v1/events/registry", notifyHeaders()))
	return &statusPage{d: d, prod: prod, mirror: mirror, ci: stagingHost + "/team/ci", created: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
}

// checkSamePage fails the test if the page was reloaded since it was marked.
func checkSamePage(t *testing.T, browser context.Context) {
	t.Helper()
	if got := eval[string](t, browser, `String(window.samePage)`); got != "yes" {
		t.Fatalf("the page was reloaded (window.samePage = %s)", got)
	}
}

// checkWebhookListener checks what a browser reaching the webhook listener gets: no page,
// no script, none of the status API.
func (p *statusPage) checkWebhookListener(t *testing.T, browser context.Context) {
	t.Helper()
	run(t, browser, "open the webhook listener", chromedp.Navigate(p.d.URL+"/"))
	if got := eval[string](t, browser, `document.body.innerText.trim()`); got != "404 page not found" {
		t.Errorf("the webhook listener's / shows %q, want 404 page not found", got)
	}
	for _, path := range []string{"/", "/ui/app.js", "/v1/pipelines", "/v1/watch", "/v1/revisions"} {
		if got := getJSON(t, p.d.URL+path, "", nil); got != http.StatusNotFound {
			t.Errorf("GET %s on the webhook listener: %d, want 404", path, got)
		}
	}
}

// checkLivePhases pushes ci/c1's arch images one at a time and checks that its row
// appears waiting, then promoted, without a reload, with its index, promotion digest and
// evidence; it leaves ci/c2 waiting, for the screenshot.
func (p *statusPage) checkLivePhases(t *testing.T, browser context.Context) {
	t.Helper()
	testenv.Push(t, p.ci+":c1-amd64", testenv.PlatformImage(t, "linux/amd64", p.created))
	waitJS(t, browser, "ci/c1 waiting for arm64", rowIn("ci.c1", "waiting"))
	if got := eval[string](t, browser, `document.querySelector('tr[data-key="ci.c1"] [data-platform="linux/amd64"]').textContent`); !strings.Contains(got, "pushed") {
		t.Errorf("amd64 of the waiting revision: %q, want it pushed", got)
	}
	testenv.Push(t, p.ci+":c1-arm64", testenv.PlatformImage(t, "linux/arm64", p.created))
	waitJS(t, browser, "ci/c1 promoted", rowIn("ci.c1", "promoted"))
	r := p.d.revision(t, "ci", "c1")
	if got := eval[string](t, browser, `document.querySelector('tr[data-key="ci.c1"] td.index [data-digest]').dataset.digest`); got != r.Index {
		t.Errorf("index shown %q, want %q", got, r.Index)
	}
	if got := eval[string](t, browser, `document.querySelector('tr[data-key="ci.c1"] [data-destination] [data-digest]').dataset.digest`); got != r.Promotions[p.prod+"/ci"].Digest {
		t.Errorf("promotion digest shown %q, want %q", got, r.Promotions[p.prod+"/ci"].Digest)
	}
	// ci neither builds nor signs: each image it merged is unverified, shown as a warning.
	evidenceShown(t, browser, r, types.EvidenceUnverified)
	checkSamePage(t, browser)
	// One more, left waiting, for the screenshot.
	testenv.Push(t, p.ci+":c2-amd64", testenv.PlatformImage(t, "linux/amd64", p.created.Add(time.Hour)))
	waitJS(t, browser, "ci/c2 waiting", rowIn("ci.c2", "waiting"))
	if n := eval[int](t, browser, `document.querySelectorAll('tr[data-key="ci.c2"] .evidence').length`); n != 0 {
		t.Errorf("ci/c2, not merged, shows %d evidence lines, want none", n)
	}
}

// checkTimeline pushes app/a1 and checks, once it is promoted, its evidence and its
// detail's timeline: every step, timed and in order, each promotion and the build.
func (p *statusPage) checkTimeline(t *testing.T, browser context.Context) {
	t.Helper()
	sourcePush(t, p.d, "https://git.example/team/app", "a1")
	waitJS(t, browser, "app/a1 promoted", rowIn("app.a1", "promoted"))
	// app merges only what its own build pushed.
	a1 := p.d.revision(t, "app", "a1")
	evidenceShown(t, browser, a1, types.EvidenceBuild)
	checkSamePage(t, browser)
	run(t, browser, "open app/a1", chromedp.Click(chromedp.CSS(`tr[data-key="app.a1"] a.revlink`)))
	waitJS(t, browser, "the timeline", `document.getElementById('timeline') !== null && !document.getElementById('detail').hidden`)
	if ev := a1.Platforms["linux/amd64"].Evidence; ev != nil {
		if got := eval[string](t, browser, `(document.querySelector('#detail dd[data-platform="linux/amd64"] .evidence') || {}).textContent || ''`); got != ev.String() {
			t.Errorf("detail of app/a1 shows the evidence of linux/amd64 as %q, want %q", got, ev.String())
		}
	}
	steps := eval[[]map[string]string](t, browser, `[...document.querySelectorAll('#timeline li')].map(li => ({kind: li.dataset.kind, when: li.querySelector('.when').textContent, what: li.querySelector('.what').textContent}))`)
	var kinds []string
	for _, s := range steps {
		kinds = append(kinds, s["kind"])
		if s["when"] == "not yet" {
			t.Errorf("step %q has no time: %+v", s["what"], s)
		}
	}
	for _, want := range []string{"received", "build-start", "build", "push", "merge", "sign", "promote-start", "promote", "finished"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("timeline lacks a %s step: %q", want, kinds)
		}
	}
	// In order: received first, finished last, one promotion per destination.
	if len(kinds) == 0 || kinds[0] != "received" || kinds[len(kinds)-1] != "finished" {
		t.Errorf("timeline order: %q", kinds)
	}
	text := eval[string](t, browser, `document.getElementById('timeline').textContent`)
	for _, want := range []string{"promoted to " + p.prod + "/app", "promoted to " + p.mirror + "/app", "build of linux/amd64 succeeded after 1 attempt", "job local@sha256:"} {
		if !strings.Contains(text, want) {
			t.Errorf("timeline lacks %q:\n%s", want, text)
		}
	}
	checkSamePage(t, browser)
	screenshot(t, browser, "status-page-detail.png")
	run(t, browser, "back to the list", chromedp.Click(chromedp.CSS("#back")))
	waitJS(t, browser, "the list", `!document.getElementById('list').hidden`)
}

// checkScriptAsText pushes broken/b1, whose build fails with a message holding pwned, and
// checks that the list and the detail show the script element as text and never run it.
func (p *statusPage) checkScriptAsText(t *testing.T, browser context.Context) {
	t.Helper()
	sourcePush(t, p.d, "https://git.example/team/broken", "b1")
	waitJS(t, browser, "broken/b1 failed", rowIn("broken.b1", "failed"))
	reason := eval[string](t, browser, `document.querySelector('tr[data-key="broken.b1"] .reason').textContent`)
	if !strings.Contains(reason, pwned) {
		t.Errorf("reason shown %q, want it to hold %q as text", reason, pwned)
	}
	// Rendered: the text is on screen, as text (innerText is what a user sees).
	if seen := eval[string](t, browser, `document.querySelector('tr[data-key="broken.b1"] .reason').innerText`); !strings.Contains(seen, pwned) {
		t.Errorf("visible text %q lacks %q", seen, pwned)
	}
	run(t, browser, "open broken/b1", chromedp.Click(chromedp.CSS(`tr[data-key="broken.b1"] a.revlink`)))
	waitJS(t, browser, "its detail", `document.getElementById('detail-reason') !== null`)
	if got := eval[string](t, browser, `document.getElementById('detail-reason').textContent`); !strings.Contains(got, pwned) {
		t.Errorf("detail reason %q lacks %q", got, pwned)
	}
	if got := eval[string](t, browser, `typeof window.pwned`); got != "undefined" {
		t.Errorf("the failure message's script ran: window.pwned is %s", got)
	}
	if n := eval[int](t, browser, `document.querySelectorAll('script').length`); n != 1 {
		t.Errorf("%d script elements in the page, want only its own", n)
	}
	run(t, browser, "back to the list", chromedp.Click(chromedp.CSS("#back")))
	waitJS(t, browser, "the list", `!document.getElementById('list').hidden`)
}

// checkFilters checks the pipeline and phase filters: what they list, in which order,
// live as revisions appear and move on, and that the filter is in the address.
func (p *statusPage) checkFilters(t *testing.T, browser context.Context) {
	t.Helper()
	keys := func() []string {
		return eval[[]string](t, browser, `[...document.querySelectorAll('#rows tr.rev')].map(tr => tr.dataset.key)`)
	}
	waitJS(t, browser, "every revision listed", `document.querySelectorAll('#rows tr.rev').length === 4`)
	selectFilter(t, browser, "f-pipeline", "ci")
	waitJS(t, browser, "only ci", `[...document.querySelectorAll('#rows tr.rev')].every(tr => tr.dataset.key.startsWith('ci.')) && document.querySelectorAll('#rows tr.rev').length === 2`)
	// A pipeline's last revisions, the last written first.
	if got := keys(); !slices.Equal(got, []string{"ci.c2", "ci.c1"}) {
		t.Errorf("pipeline ci: %q, want the last written first", got)
	}
	// Live under a filter: a new ci revision appears on top, an app one does not.
	testenv.Push(t, p.ci+":c3-amd64", testenv.PlatformImage(t, "linux/amd64", p.created.Add(2*time.Hour)))
	waitJS(t, browser, "ci/c3 under the filter", rowIn("ci.c3", "waiting"))
	if got := keys(); !slices.Equal(got, []string{"ci.c3", "ci.c2", "ci.c1"}) {
		t.Errorf("pipeline ci after c3: %q, want c3 on top", got)
	}
	selectFilter(t, browser, "f-phase", "waiting")
	waitJS(t, browser, "ci and waiting", `document.querySelectorAll('#rows tr.rev').length === 2 && [...document.querySelectorAll('#rows tr.rev')].every(tr => tr.dataset.phase === 'waiting')`)
	if got := keys(); !slices.Equal(got, []string{"ci.c3", "ci.c2"}) {
		t.Errorf("pipeline ci, phase waiting: %q", got)
	}
	// A revision that moves on moves up, live, and out of a phase it left.
	testenv.Push(t, p.ci+":c2-arm64", testenv.PlatformImage(t, "linux/arm64", p.created.Add(time.Hour)))
	waitJS(t, browser, "ci/c2 gone from waiting", `document.querySelector('tr[data-key="ci.c2"]') === null`)
	selectFilter(t, browser, "f-phase", "")
	waitJS(t, browser, "ci/c2 promoted", rowIn("ci.c2", "promoted"))
	if got := keys(); !slices.Equal(got, []string{"ci.c2", "ci.c3", "ci.c1"}) {
		t.Errorf("pipeline ci after c2 was promoted: %q, want c2 on top", got)
	}
	checkSamePage(t, browser)
	selectFilter(t, browser, "f-pipeline", "")
	selectFilter(t, browser, "f-phase", "failed")
	waitJS(t, browser, "failed only", `document.querySelectorAll('#rows tr.rev').length === 1`)
	if got := keys(); !slices.Equal(got, []string{"broken.b1"}) {
		t.Errorf("phase failed: %q", got)
	}
	if got := eval[string](t, browser, `location.hash`); got != "#/?phase=failed" {
		t.Errorf("the filter is not in the address: %q", got)
	}
	selectFilter(t, browser, "f-phase", "")
	waitJS(t, browser, "every revision again", `document.querySelectorAll('#rows tr.rev').length === 5`)
	checkSamePage(t, browser)
}

// screenshot writes a PNG of the whole page as name in the test's artifact directory or,
// when PROMOTER_SCREENSHOT names a file (docs/status-page.png), in that file's directory,
// the list view ("status-page.png") under that file's own name.
func screenshot(t *testing.T, browser context.Context, name string) {
	t.Helper()
	path := filepath.Join(t.ArtifactDir(), name)
	if to := os.Getenv("PROMOTER_SCREENSHOT"); to != "" {
		path = filepath.Join(filepath.Dir(to), name)
		if name == "status-page.png" {
			path = to
		}
	}
	ctx, cancel := context.WithTimeout(browser, time.Minute)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

// startBrowser starts headless chromium (PROMOTER_CHROMIUM, or chromium on PATH, as
// hack/chromium.sh installs it) with a fresh profile, and returns a tab's context; it is
// closed when the test ends. A chromium that is missing or cannot start is a missing
// component (testenv.Require).
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv("PROMOTER_CHROMIUM")
	if path == "" {
		var err error
		if path, err = exec.LookPath("chromium"); err != nil {
			testenv.Require(t, "chromium (bash hack/chromium.sh installs it from apt, or set PROMOTER_CHROMIUM): %v", err)
		}
	}
	var out syncBuffer
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1500, 900),
		chromedp.CombinedOutput(&out),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser, bound to ctx itself (a derived context with a
	// deadline would end it with the deadline).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		testenv.Require(t, "chromium at %s does not start: %v\n%s", path, err, out.String())
	}
	// The page's console and uncaught exceptions, shown when the test fails.
	console := &syncBuffer{t: t}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			fmt.Fprintln(console, m.String())
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("browser console:\n%s", console.String())
		}
	})
	return ctx
}

// run runs browser actions, bounded so that a page that never gets there fails the test.
func run(t *testing.T, browser context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(browser, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitJS waits until the page's expression is true: an update pushed by the daemon, a
// render. The bound only ends a test whose page never gets there.
func waitJS(t *testing.T, browser context.Context, what, expr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(browser, 2*time.Minute)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(0))); err != nil {
		body, _ := chromedp.Run(browser, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
		t.Fatalf("waiting for %s (%s): %v\npage:\n%s", what, expr, err, body)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, browser context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(browser, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// evidenceShown checks that the row of merged revision r shows, for each platform, the
// evidence the revision state records, of kind want, in the words of types.Evidence.String
// (which app.js mirrors); unverified as a warning, the others not.
func evidenceShown(t *testing.T, browser context.Context, r *types.Revision, want types.EvidenceKind) {
	t.Helper()
	key := r.Pipeline + "." + r.Revision
	for _, p := range slices.Sorted(maps.Keys(r.Platforms)) {
		ev := r.Platforms[p].Evidence
		if ev == nil {
			t.Errorf("%s %s was merged without evidence in the revision state", key, p)
			continue
		}
		if ev.Kind != want {
			t.Errorf("%s %s: evidence %+v, want kind %s", key, p, *ev, want)
		}
		sel := fmt.Sprintf(`tr[data-key=%q] [data-platform=%q] .evidence`, key, p)
		got := eval[map[string]any](t, browser, fmt.Sprintf(
			`(() => { const e = document.querySelector(%q); return e ? {text: e.textContent, kind: e.dataset.evidence, warn: e.classList.contains('warn')} : {}; })()`, sel))
		if got["text"] != ev.String() || got["kind"] != string(ev.Kind) || got["warn"] != (ev.Kind == types.EvidenceUnverified) {
			t.Errorf("%s %s shows evidence %v, want %q (kind %s, a warning: %t)", key, p, got, ev.String(), ev.Kind, ev.Kind == types.EvidenceUnverified)
		}
	}
}

// rowIn is the expression "the row of key shows phase".
func rowIn(key string, phase types.Phase) string {
	return fmt.Sprintf(`document.querySelector('tr[data-key=%q][data-phase=%q]') !== null`, key, phase)
}

// selectFilter picks value in the select element id, as a user does (a change event).
func selectFilter(t *testing.T, browser context.Context, id, value string) {
	t.Helper()
	js, _ := json.Marshal(value)
	run(t, browser, "filter "+id+"="+value, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(() => { const s = document.getElementById(%q); s.value = %s; s.dispatchEvent(new Event('change')); })()`, id, js)))
}

// sourcePush sends the generic source webhook (token "gen") of a push of revision to repo.
func sourcePush(t *testing.T, d *runningDaemon, repo, revision string) {
	t.Helper()
	body := fmt.Sprintf(`{"repo":%q,"ref":"refs/heads/main","revision":%q}`, repo, revision)
	req, _ := http.NewRequest(http.MethodPost, d.URL+"/v1/events/source/generic", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer gen")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("source push %s of %s: %s", revision, repo, resp.Status)
	}
}
