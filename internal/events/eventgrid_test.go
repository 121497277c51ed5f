package events

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestEventGridSubscriptionValidation: Event Grid's own schema validates a subscription
// with a Microsoft.EventGrid.SubscriptionValidationEvent, answered at once with its
// validation code; nothing is stored.
func TestEventGridSubscriptionValidation(t *testing.T) {
	validation := readTestdata(t, "acr", "eventgrid-subscription-validation.json")
	tests := []struct {
		name    string
		secrets Secrets
		header  http.Header
		status  int
		code    string
	}{
		{"with the token", allSecrets(), http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + acrToken}, "Aeg-Event-Type": {"SubscriptionValidation"}}, http.StatusOK, "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
		// The answer only echoes what the request says, and enables nothing without the
		// token: every event is still authenticated.
		{"without a header", allSecrets(), http.Header{"Content-Type": {"application/json"}, "Aeg-Event-Type": {"SubscriptionValidation"}}, http.StatusOK, "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
		{"receiver disabled", Secrets{"registry": registryToken}, http.Header{"Content-Type": {"application/json"}}, http.StatusUnauthorized, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.secrets)
			r := h.post(t, "/v1/events/registry/acr", validation, tc.header)
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			if calls, _ := h.pub.Snapshot(); calls != 0 {
				t.Errorf("%d publishes for a validation event", calls)
			}
			if tc.code == "" {
				return
			}
			var got map[string]string
			if err := json.Unmarshal([]byte(r.body), &got); err != nil || len(got) != 1 || got["validationResponse"] != tc.code {
				t.Errorf("answered %s, want {\"validationResponse\": %q}", r.body, tc.code)
			}
			if n := h.countReason("acr", "validation", "ignored", "handshake"); n != 1 {
				t.Errorf(`promoter_events_received_total{source="acr",action="validation",outcome="ignored",reason="handshake"} = %v, want 1`, n)
			}
		})
	}
}

// TestEventGridRefuse: Event Grid bodies that are not Event Grid events, or whose data is
// no ACR event, are refused with what to fix.
func TestEventGridRefuse(t *testing.T) {
	acr := jsonHeader("Bearer " + acrToken)
	tests := []struct {
		name   string
		body   string
		header http.Header
		status int
		msg    string
	}{
		{"an event without eventType", `[{"id":"1","data":{}}]`, acr, 400, "not an Event Grid event"},
		{"ImagePushed whose data is no ACR event", `[{"id":"1","eventType":"Microsoft.ContainerRegistry.ImagePushed","subject":"s","data":{"id":"2"}}]`, acr, 400, `no "action"`},
		{"ImagePushed whose data is a string but no JSON", `[{"id":"1","eventType":"Microsoft.ContainerRegistry.ImagePushed","subject":"s","data":"push"}]`, acr, 400, "data"},
		{"an array of something else", `[1]`, acr, 400, "Event Grid"},
		{"Event Grid batch without a token", string(readTestdata(t, "acr", "eventgrid-schema-image-pushed.json")), http.Header{"Content-Type": {"application/json"}}, 401, "missing Authorization"},
		{"validation event without a code", `[{"id":"1","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","subject":"","data":{}}]`, acr, 400, "validationCode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, allSecrets())
			r := h.post(t, "/v1/events/registry/acr", []byte(tc.body), tc.header)
			if r.status != tc.status || !strings.Contains(r.errorMessage(t), tc.msg) {
				t.Fatalf("got %d %s, want %d mentioning %q", r.status, r.body, tc.status, tc.msg)
			}
			if calls, _ := h.pub.Snapshot(); calls != 0 {
				t.Errorf("%d publishes for a refused notification", calls)
			}
		})
	}
}

// TestACRWebhookValidation: Event Grid validates an endpoint that gets the CloudEvents
// schema with the CloudEvents webhook handshake; the ACR endpoint answers it as the
// CloudEvents endpoint does.
func TestACRWebhookValidation(t *testing.T) {
	h := newHarness(t, allSecrets())
	req, _ := http.NewRequest(http.MethodOptions, h.srv.URL+"/v1/events/registry/acr", nil)
	req.Header.Set("WebHook-Request-Origin", "eventgrid.azure.net")
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("WebHook-Allowed-Origin") != "eventgrid.azure.net" {
		t.Errorf("got %d with WebHook-Allowed-Origin %q, want 200 and %q", resp.StatusCode, resp.Header.Get("WebHook-Allowed-Origin"), "eventgrid.azure.net")
	}
}

// TestPubSubAdvice: the error for a body that is no Pub/Sub push advises turning payload
// unwrapping off only when the body is an unwrapped Artifact Registry notification.
func TestPubSubAdvice(t *testing.T) {
	path := "/v1/events/registry/gar?token=" + garToken
	header := http.Header{"Content-Type": {"application/json"}}
	tests := []struct {
		name          string
		body          string
		want, notWant string
	}{
		{"unwrapped notification", `{"action":"INSERT","tag":"europe-west1-docker.pkg.dev/acme-prod/containers/web:abc123-amd64"}`, "payload unwrapping", ""},
		{"something else", `{"subscription":"projects/acme-prod/subscriptions/promoter"}`, `no "message"`, "unwrapping"},
		{"message without data", `{"message":{"messageId":"1"}}`, "data", "unwrapping"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, allSecrets())
			r := h.post(t, path, []byte(tc.body), header)
			msg := r.errorMessage(t)
			if r.status != http.StatusBadRequest || !strings.Contains(msg, tc.want) || tc.notWant != "" && strings.Contains(msg, tc.notWant) {
				t.Errorf("got %d %q, want 400 mentioning %q and not %q", r.status, msg, tc.want, tc.notWant)
			}
		})
	}
}
