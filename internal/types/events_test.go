package types

import (
	"testing"
	"time"
)

// TestSourceChangedMsgID: the message id of a source change is its pipeline and revision,
// whatever reported it (delivery id, repository URL form, time).
func TestSourceChangedMsgID(t *testing.T) {
	const rev = "59b20b8d5c6ff8d09518454d4dd8b7b30f095ab5"
	webhook := SourceChanged{ID: "72d3162e-cc78-11e3-81ab-4c9367dc0958", Pipeline: "web", Repo: "https://github.com/acme/web.git",
		Ref: "refs/heads/main", Revision: rev, Received: time.Date(2026, 11, 23, 5, 0, 0, 0, time.UTC)}
	tests := []struct {
		name string
		ev   SourceChanged
		want string
	}{
		{name: "a webhook", ev: webhook, want: "source/web/" + rev},
		{name: "its redelivery under another id", ev: func() SourceChanged { e := webhook; e.ID = "another"; return e }(), want: "source/web/" + rev},
		{name: "a poll", ev: SourceChanged{Pipeline: "web", Repo: "git@github.com:acme/web.git", Ref: "refs/heads/main", Revision: rev}, want: "source/web/" + rev},
		{name: "another pipeline", ev: func() SourceChanged { e := webhook; e.Pipeline = "api"; return e }(), want: "source/api/" + rev},
		{name: "another revision", ev: func() SourceChanged { e := webhook; e.Revision = "a7f3c0de"; return e }(), want: "source/web/a7f3c0de"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ev.MsgID(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
