package events

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// CloudEvents over HTTP (the CloudEvents 1.0 HTTP protocol binding). A sender uses one of
// two modes: structured, the whole event as JSON with Content-Type
// application/cloudevents+json (or a JSON array of them, application/cloudevents-batch+json);
// or binary, the attributes as ce-* headers and the data as the body. Harbor sends
// structured events; Zot (through the CloudEvents Go SDK) sends binary ones. The format is
// small and stable, so it is decoded here rather than through the SDK.
const (
	cloudEventsMediaType      = "application/cloudevents+json"
	cloudEventsBatchMediaType = "application/cloudevents-batch+json"
)

// cloudEvent is one event, whatever the mode it came in.
type cloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	DataBase64      string          `json:"data_base64"`
}

// cloudEventPushes turns the data of one event type into pushes; a type not listed here is
// acknowledged and ignored. Registries name their types after themselves.
var cloudEventPushes = map[string]func(e cloudEvent) ([]imagePush, error){
	// Harbor, payload format CloudEvents.
	"harbor.artifact.pushed": func(e cloudEvent) ([]imagePush, error) {
		var d harborEventData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return nil, reject(http.StatusBadRequest, "decoding the data of %s event %s: %v", e.Type, e.ID, err)
		}
		return d.pushes(e.ID, e.Time)
	},
	// Azure Container Registry through Event Grid (event schema "Cloud Event Schema
	// v1.0"): the data is the ACR webhook's event.
	acrImagePushed: acrCloudEventPushes,
	// Zot's events extension (pkg/extensions/events): data names the repository, the
	// reference pushed (a tag, or a digest) and its digest; the registry's address is in no
	// field, so the repository path finds the pipeline.
	"zotregistry.image.updated": func(e cloudEvent) ([]imagePush, error) {
		var d struct {
			Name      string `json:"name"`
			Reference string `json:"reference"`
			Digest    string `json:"digest"`
			MediaType string `json:"mediaType"`
		}
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return nil, reject(http.StatusBadRequest, "decoding the data of %s event %s: %v", e.Type, e.ID, err)
		}
		p := imagePush{id: e.ID, repo: d.Name, tag: d.Reference, digest: d.Digest, mediaType: d.MediaType, at: e.Time}
		if strings.HasPrefix(d.Reference, "sha256:") {
			p.tag = ""
		}
		return []imagePush{p}, nil
	},
}

// decodeCloudEvents reads POST /v1/events/registry/cloudevents in either mode.
func (r *Receiver) decodeCloudEvents(w http.ResponseWriter, req *http.Request) ([]registryOutcome, error) {
	if err := checkToken(req, r.secrets["cloudevents"], "auth.cloudevents.token", "CloudEvents"); err != nil {
		return nil, err
	}
	accepted := []string{cloudEventsMediaType, cloudEventsBatchMediaType}
	if req.Header.Get("ce-specversion") != "" {
		accepted = []string{jsonMediaType} // binary mode: the body is the data
	}
	body, err := readBody(w, req, r.maxBody, accepted...)
	if err != nil {
		return nil, err
	}
	return r.classifyCloudEvents("cloudevents", req, body)
}

// webhookValidation answers the abuse-protection handshake of CloudEvents' "HTTP 1.1 Web
// Hooks for Event Delivery" (section 4), which Azure Event Grid sends before it delivers
// CloudEvents to an endpoint: an OPTIONS request naming the sender in
// WebHook-Request-Origin, granted by echoing it in WebHook-Allowed-Origin. The handshake
// only says the endpoint wants events; every event is still authenticated by token
// (configKey), and while that is unset the endpoint wants none.
func (r *Receiver) webhookValidation(token, configKey, what string) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		if token == "" {
			fail(w, reject(http.StatusUnauthorized, "%s are disabled: set %s", what, configKey))
			return
		}
		origin := req.Header.Get("WebHook-Request-Origin")
		if origin == "" {
			fail(w, reject(http.StatusBadRequest, "not a CloudEvents webhook validation request: no WebHook-Request-Origin header"))
			return
		}
		w.Header().Set("Allow", "OPTIONS, POST")
		w.Header().Set("WebHook-Allowed-Origin", origin)
		w.WriteHeader(http.StatusOK)
	}
}

// classifyCloudEvents decodes a request's events, in whichever mode they came, and
// classifies their pushes.
func (r *Receiver) classifyCloudEvents(source string, req *http.Request, body []byte) ([]registryOutcome, error) {
	events, err := decodeCloudEvents(req, body)
	if err != nil {
		return nil, err
	}
	var out []registryOutcome
	for _, e := range events {
		pushes, ok := cloudEventPushes[e.Type]
		if !ok {
			out = append(out, ignored("other", cloudEventReason(e.Type)))
			continue
		}
		if len(e.Data) == 0 && e.DataBase64 != "" {
			if e.Data, err = base64.StdEncoding.DecodeString(e.DataBase64); err != nil {
				return nil, reject(http.StatusBadRequest, "event %s: data_base64: %v", e.ID, err)
			}
		}
		if e.Data, err = eventData(e.Data); err != nil {
			return nil, reject(http.StatusBadRequest, "event %s: %v", e.ID, err)
		}
		ps, err := pushes(e)
		if err != nil {
			return nil, err
		}
		kept, err := r.classifyAll(source, ps)
		if err != nil {
			return nil, reject(http.StatusBadRequest, "event %s: %v", e.ID, err)
		}
		out = append(out, kept...)
	}
	return out, nil
}

// cloudEventReason is why an event of a type cloudEventPushes does not read is ignored: a
// known registry's other events (pulls, deletes, scans) are not_a_push, anything else
// unknown_type.
func cloudEventReason(eventType string) string {
	for _, prefix := range []string{"harbor.", "zotregistry.", acrEventTypes} {
		if strings.HasPrefix(eventType, prefix) {
			return reasonNotAPush
		}
	}
	return reasonUnknownType
}

// eventData is an event's data as JSON. Event Grid delivers the data of Azure's events as
// a JSON-encoded string rather than an object (its SDKs decode it twice), in its own
// schema and in CloudEvents; such a string is decoded once more, anything else is returned
// as it is.
func eventData(data json.RawMessage) ([]byte, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '"' {
		return data, nil
	}
	var s string
	if err := json.Unmarshal(trimmed, &s); err != nil {
		return nil, fmt.Errorf("data: %v", err)
	}
	return []byte(s), nil
}

// decodeCloudEvents reads the events of a request: one structured event, a batch, or one
// binary-mode event. Each must have the required attributes.
func decodeCloudEvents(req *http.Request, body []byte) ([]cloudEvent, error) {
	var events []cloudEvent
	switch mediaType(req) {
	case cloudEventsMediaType:
		var e cloudEvent
		if err := decodeJSON(body, &e, false); err != nil {
			return nil, reject(http.StatusBadRequest, "decoding structured CloudEvent: %v", err)
		}
		events = []cloudEvent{e}
	case cloudEventsBatchMediaType:
		if err := decodeJSON(body, &events, false); err != nil {
			return nil, reject(http.StatusBadRequest, "decoding CloudEvents batch: %v", err)
		}
	default: // binary mode
		h := req.Header
		e := cloudEvent{
			SpecVersion: h.Get("ce-specversion"), ID: h.Get("ce-id"), Source: h.Get("ce-source"),
			Type: h.Get("ce-type"), Subject: h.Get("ce-subject"), DataContentType: h.Get("Content-Type"), Data: body,
		}
		if t := h.Get("ce-time"); t != "" {
			at, err := time.Parse(time.RFC3339Nano, t)
			if err != nil {
				return nil, reject(http.StatusBadRequest, "ce-time %q is not an RFC 3339 time: %v", t, err)
			}
			e.Time = at
		}
		events = []cloudEvent{e}
	}
	for i, e := range events {
		if e.SpecVersion != "1.0" || e.ID == "" || e.Source == "" || e.Type == "" {
			return nil, reject(http.StatusBadRequest, "event %d is not a CloudEvent 1.0: specversion %q, id %q, source %q and type %q must all be set",
				i, e.SpecVersion, e.ID, e.Source, e.Type)
		}
	}
	return events, nil
}
