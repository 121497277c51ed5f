package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/promoter-dev/promoter/internal/status"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

const statusToken = "e2e-status-token"

// TestStatusIsPrivateAndPaged: the status API and page answer only on their own listener,
// the API only with the token; the webhook listener, which forges reach from outside,
// knows nothing of either. Pages follow key order and end with an empty cursor.
func TestStatusIsPrivateAndPaged(t *testing.T) {
	staging := testenv.StartRegistry(t)
	d := startDaemon(t, newDaemonConfig(t, withAuth("statusToken", statusToken), withToken("generic", "gen"),
		withPipeline(pipelineConfig{
			Name: "app", Source: &sourceConfig{Repo: "https://git.example/team/app"}, Platforms: []string{"linux/amd64"},
			Staging: staging.Host + "/team/app",
		})))
	revs := []string{"r3", "r1", "r5", "r2", "r4"}
	for _, rev := range revs {
		sourcePush(t, d, "https://git.example/team/app", rev)
	}
	// Wait for every revision's state through the status API itself.
	err := testenv.WaitFor(30*time.Second, func() error {
		var page status.Page
		if code := getJSON(t, d.Status+"/v1/revisions?limit=1000", statusToken, &page); code != http.StatusOK {
			t.Fatalf("status: %d", code)
		}
		if n := len(page.Revisions); n < len(revs) {
			return fmt.Errorf("only %d of %d revisions have state", n, len(revs))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, d.Logs.String())
	}

	for _, tc := range []struct {
		name  string
		url   string
		token string
		want  int
	}{
		{"webhook listener, list", d.URL + "/v1/revisions", "", http.StatusNotFound},
		{"webhook listener, list with the token", d.URL + "/v1/revisions", statusToken, http.StatusNotFound},
		{"webhook listener, one revision", d.URL + "/v1/revisions/app/r1", "", http.StatusNotFound},
		{"webhook listener, the status page", d.URL + "/", "", http.StatusNotFound},
		{"webhook listener, the page's script", d.URL + "/ui/app.js", "", http.StatusNotFound},
		{"webhook listener, the watch stream", d.URL + "/v1/watch", statusToken, http.StatusNotFound},
		{"webhook listener, the pipelines", d.URL + "/v1/pipelines", statusToken, http.StatusNotFound},
		{"status listener, the page needs no token", d.Status + "/", "", http.StatusOK},
		{"status listener, the watch stream without a token", d.Status + "/v1/watch", "", http.StatusUnauthorized},
		{"status listener, the pipelines without a token", d.Status + "/v1/pipelines", "", http.StatusUnauthorized},
		{"status listener without a token", d.Status + "/v1/revisions", "", http.StatusUnauthorized},
		{"status listener with a wrong token", d.Status + "/v1/revisions/app/r1", "nope", http.StatusUnauthorized},
		{"status listener with the token", d.Status + "/v1/revisions/app/r1", statusToken, http.StatusOK},
		{"limit past the maximum", d.Status + "/v1/revisions?limit=100000", statusToken, http.StatusBadRequest},
		{"limit zero", d.Status + "/v1/revisions?limit=0", statusToken, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := getJSON(t, tc.url, tc.token, nil); got != tc.want {
				t.Errorf("GET %s: got %d, want %d", tc.url, got, tc.want)
			}
		})
	}

	var pages [][]string
	after := ""
	for range 10 {
		var page status.Page
		if code := getJSON(t, d.Status+"/v1/revisions?pipeline=app&limit=2&after="+after, statusToken, &page); code != http.StatusOK {
			t.Fatalf("page after %q: %d", after, code)
		}
		var names []string
		for _, r := range page.Revisions {
			names = append(names, r.Revision)
		}
		pages = append(pages, names)
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if diff := cmp.Diff([][]string{{"r1", "r2"}, {"r3", "r4"}, {"r5"}}, pages); diff != "" {
		t.Errorf("pages (-want +got):\n%s", diff)
	}
	if r := d.revision(t, "app", "r5"); r == nil || r.Phase != types.PhaseBuilding {
		t.Errorf("runningDaemon.revision: got %+v, want r5 building", r)
	}
}

// getJSON GETs url with an optional bearer token, decodes a 200 body into v (when not
// nil) and returns the status code.
func getJSON(t *testing.T, url, token string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("decoding %s: %v\n%s", url, err, b)
		}
	}
	return resp.StatusCode
}
