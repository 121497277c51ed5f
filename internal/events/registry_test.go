package events

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/notifications"
	"github.com/google/go-cmp/cmp"
)

// TestEnvelopeDecodesAsDistribution holds the envelope declared in registry.go to
// distribution's notifications.Event, which it replaces so that the daemon does not link
// distribution: the same JSON names, types and nesting, and every captured notification
// and every malformed body decodes (or fails) the same way in both.
func TestEnvelopeDecodesAsDistribution(t *testing.T) {
	if got, want := jsonShape(reflect.TypeOf(event{})), jsonShape(reflect.TypeOf(notifications.Event{})); got != want {
		t.Errorf("event's JSON shape differs from notifications.Event's:\n%s", cmp.Diff(want, got))
	}
	if EnvelopeMediaType != notifications.EventsMediaType {
		t.Errorf("EnvelopeMediaType = %q, want %q", EnvelopeMediaType, notifications.EventsMediaType)
	}
	for got, want := range map[string]string{
		actionPull: notifications.EventActionPull, actionPush: notifications.EventActionPush,
		actionMount: notifications.EventActionMount, actionDelete: notifications.EventActionDelete,
	} {
		if got != want {
			t.Errorf("action %q, want %q", got, want)
		}
	}

	bodies := map[string][]byte{
		"size is a string":       []byte(`{"events":[{"action":"push","target":{"size":"12"}}]}`),
		"timestamp is no time":   []byte(`{"events":[{"action":"push","timestamp":"yesterday"}]}`),
		"platform is a string":   []byte(`{"events":[{"target":{"platform":"linux/amd64"}}]}`),
		"references is a map":    []byte(`{"events":[{"target":{"references":{}}}]}`),
		"data is not base64":     []byte(`{"events":[{"target":{"data":"%%"}}]}`),
		"request host is number": []byte(`{"events":[{"request":{"host":1}}]}`),
		"unknown fields":         []byte(`{"events":[{"action":"push","extra":1,"target":{"repository":"a","more":[]}}]}`),
	}
	files, err := filepath.Glob(filepath.Join("testdata", "registry", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no captured notifications in testdata/registry (%v)", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		bodies[f] = b
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			var ours envelope
			var theirs struct {
				Events []notifications.Event `json:"events"`
			}
			errOurs, errTheirs := decodeJSON(body, &ours, false), decodeJSON(body, &theirs, false)
			if (errOurs == nil) != (errTheirs == nil) {
				t.Fatalf("decoding here: %v; with distribution's type: %v; want both to fail or both to succeed", errOurs, errTheirs)
			}
			if errOurs != nil {
				return
			}
			if diff := cmp.Diff(reencode(t, theirs), reencode(t, ours)); diff != "" {
				t.Errorf("decoded differently from distribution (-distribution +here):\n%s", diff)
			}
		})
	}
}

var notificationsPkg = reflect.TypeOf(notifications.Event{}).PkgPath()

// jsonShape describes t as encoding/json sees it: each field's JSON name, options and
// type, nested structs spelled out (embedded ones flattened, as json flattens them).
func jsonShape(t reflect.Type) string {
	var b strings.Builder
	var walk func(t reflect.Type, indent string)
	walk = func(t reflect.Type, indent string) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			if f.Anonymous && f.Tag.Get("json") == "" {
				walk(f.Type, indent)
				continue
			}
			ft := f.Type
			// Spell out anonymous structs and distribution's records (RequestRecord...);
			// shared types (time.Time, the OCI descriptor) compare by name.
			if ft.Kind() == reflect.Struct && (ft.Name() == "" || ft.PkgPath() == notificationsPkg) {
				fmt.Fprintf(&b, "%s%s %q {\n", indent, f.Name, f.Tag.Get("json"))
				walk(ft, indent+"  ")
				fmt.Fprintf(&b, "%s}\n", indent)
				continue
			}
			fmt.Fprintf(&b, "%s%s %q %s\n", indent, f.Name, f.Tag.Get("json"), ft)
		}
	}
	walk(t, "")
	return b.String()
}

// reencode is v as JSON decoded into generic values, for comparing two types' views.
func reencode(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
