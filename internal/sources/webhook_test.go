package sources_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/bus/bustest"
	"github.com/promoter-dev/promoter/internal/events"
	"github.com/promoter-dev/promoter/internal/sources"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestWebhookAndPollAreOneMessage: a webhook and a poll that report the same head, in
// either order, are one message in the events stream (one SourceChanged consumed, so one
// dispatch): the second is acknowledged as a duplicate by the real JetStream.
func TestWebhookAndPollAreOneMessage(t *testing.T) {
	const token = "generic-s3cret"
	srv := testenv.StartGitServer(t)
	b := bustest.Start(t, bus.WithName("sources-test"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tests := []struct {
		name        string
		pipeline    string
		webhookLast bool
		wantPoll    sources.Outcome
		wantWebhook events.Summary
	}{
		{name: "webhook, then poll", pipeline: "hooked", wantPoll: sources.OutcomeDuplicate, wantWebhook: events.Summary{Accepted: 1}},
		{name: "poll, then webhook", pipeline: "polled", webhookLast: true, wantPoll: sources.OutcomeNew, wantWebhook: events.Summary{Duplicates: 1}},
	}
	var pipelines []types.Pipeline
	heads := map[string]string{}
	for _, tt := range tests {
		name := tt.pipeline
		repo, head := srv.CreateRepo(t, name, map[string]string{"Dockerfile": "FROM scratch\n"})
		heads[name] = head
		pipelines = append(pipelines, types.Pipeline{
			Name: name, Source: types.Source{Repo: repo, Branch: "main", Poll: time.Hour},
			Platforms: []types.Platform{types.MustPlatform("linux/amd64")},
			Staging:   types.Repository("staging.example/acme/" + name), ArchTag: types.DefaultArchTag,
		})
	}
	rcv, err := events.New(pipelines, events.Secrets{"generic": token}, b)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	rcv.Register(mux)
	hooks := httptest.NewServer(mux)
	t.Cleanup(hooks.Close)
	poller, err := sources.New(b, pipelines)
	if err != nil {
		t.Fatal(err)
	}

	for i, tt := range tests {
		p := pipelines[i]
		head := heads[p.Name]
		t.Run(tt.name, func(t *testing.T) {
			var gotWebhook events.Summary
			webhook := func() { gotWebhook = genericPush(t, hooks.URL, token, p.Source.Repo, head) }
			if !tt.webhookLast {
				webhook()
			}
			gotPoll, err := poller.Poll(ctx, p.Name)
			if err != nil || gotPoll != tt.wantPoll {
				t.Errorf("poll: got %s (%v), want %s", gotPoll, err, tt.wantPoll)
			}
			if tt.webhookLast {
				webhook()
			}
			if diff := cmp.Diff(tt.wantWebhook, gotWebhook); diff != "" {
				t.Errorf("webhook summary (-want +got):\n%s", diff)
			}
		})
	}

	// One message per pipeline, each under the id of its pipeline and head.
	stored := bustest.Stored(t, b, bus.StreamEvents, "promoter.events.>")
	if diff := cmp.Diff(map[string]uint64{types.SubjectSourceChanged: uint64(len(pipelines))}, bustest.Subjects(stored)); diff != "" {
		t.Errorf("messages per subject in %s (-want +got):\n%s", bus.StreamEvents, diff)
	}
	var ids []string
	for _, msg := range stored {
		ids = append(ids, msg.MsgID)
	}
	want := []string{"source/hooked/" + heads["hooked"], "source/polled/" + heads["polled"]}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("message ids (-want +got):\n%s", diff)
	}
}

// genericPush sends the generic source webhook for revision of repo's main branch.
func genericPush(t *testing.T, url, token, repo, revision string) events.Summary {
	t.Helper()
	body, _ := json.Marshal(events.GenericPush{Repo: repo, Ref: "main", Revision: revision})
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/events/source/generic", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("generic webhook: got %s (%s), want 200", resp.Status, reply)
	}
	var s events.Summary
	if err := json.Unmarshal(reply, &s); err != nil {
		t.Fatalf("generic webhook reply %q: %v", reply, err)
	}
	return s
}
