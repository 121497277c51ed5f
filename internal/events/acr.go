package events

import (
	"net/http"
	"time"
)

// acrEvent is an Azure Container Registry event (Microsoft Learn, "Azure Container
// Registry webhook reference"). ACR sends it as the whole body of a webhook, and Event
// Grid delivers the same object as the data of a Microsoft.ContainerRegistry.ImagePushed
// event ("Azure Container Registry as an Event Grid source"): one decoder serves both.
type acrEvent struct {
	ID        string    `json:"id"`
	Timestamp time.Time `json:"timestamp"`
	Action    string    `json:"action"`
	Target    struct {
		MediaType  string `json:"mediaType"`
		Digest     string `json:"digest"`
		Repository string `json:"repository"`
		Tag        string `json:"tag"`
	} `json:"target"`
	Request struct {
		// Host is the registry's login server, "myregistry.azurecr.io".
		Host string `json:"host"`
	} `json:"request"`
}

// acrImagePush is the webhook action of an image push; chart_push, delete, chart_delete
// and quarantine are acknowledged and ignored.
const acrImagePush = "push"

// decodeACREvent reads one ACR event; what names it in errors ("ACR webhook payload", or
// the Event Grid event).
func decodeACREvent(data []byte, what string) (acrEvent, error) {
	var e acrEvent
	if err := decodeJSON(data, &e, false); err != nil {
		return e, reject(http.StatusBadRequest, "decoding %s: %v", what, err)
	}
	if e.Action == "" {
		return e, reject(http.StatusBadRequest, `decoding %s: no "action"; is this an Azure Container Registry event?`, what)
	}
	if e.Action == acrImagePush && e.Target.Repository == "" {
		return e, reject(http.StatusBadRequest, "%s: push without target.repository", what)
	}
	return e, nil
}

// push is the image push an ACR event reports. An untagged push (by digest) has no tag and
// is ignored by classifyPush.
func (e acrEvent) push() imagePush {
	return imagePush{
		id: e.ID, host: hostField(e.Request.Host), repo: e.Target.Repository, tag: e.Target.Tag,
		digest: e.Target.Digest, mediaType: e.Target.MediaType, at: e.Timestamp,
	}
}

// decodeACR reads POST /v1/events/registry/acr, authenticated by the custom header the
// webhook or the Event Grid subscription is configured with (Authorization: Bearer
// <auth.acr.token>). It takes every way ACR reports a push: a registry webhook (one JSON
// object), and Event Grid's deliveries in either event schema, its own (a JSON array of
// Event Grid events, classifyEventGrid) or CloudEvents 1.0 (classifyCloudEvents).
func (r *Receiver) decodeACR(w http.ResponseWriter, req *http.Request) ([]registryOutcome, error) {
	const what = "Azure Container Registry events"
	if r.secrets["acr"] == "" {
		return nil, checkToken(req, "", "auth.acr.token", what)
	}
	authenticate := func() error { return checkToken(req, r.secrets["acr"], "auth.acr.token", what) }
	body, err := readBody(w, req, r.maxBody, jsonMediaType, cloudEventsMediaType, cloudEventsBatchMediaType)
	if err != nil {
		return nil, err
	}
	if mediaType(req) != jsonMediaType {
		if err := authenticate(); err != nil {
			return nil, err
		}
		return r.classifyCloudEvents("acr", req, body)
	}
	if isJSONArray(body) {
		return r.classifyEventGrid(w, "acr", body, authenticate)
	}
	if err := authenticate(); err != nil {
		return nil, err
	}
	e, err := decodeACREvent(body, "ACR webhook payload")
	if err != nil {
		return nil, err
	}
	if e.Action != acrImagePush {
		return []registryOutcome{ignored(acrAction(e.Action), notPushReason(acrAction(e.Action)))}, nil
	}
	return r.classifyAll("acr", []imagePush{e.push()})
}

// acrImagePushed is the Event Grid event type of an ACR image push, delivered in the
// CloudEvents schema (cloudEventPushes) or in Event Grid's own (classifyEventGrid).
const acrImagePushed = "Microsoft.ContainerRegistry.ImagePushed"

// acrEventTypes is the prefix of every ACR event type on Event Grid (ImageDeleted,
// ChartPushed, ChartDeleted, ...): those other than acrImagePushed are no push.
const acrEventTypes = "Microsoft.ContainerRegistry."

// acrCloudEventPushes decodes the data of an acrImagePushed CloudEvent (acrEventGridPush).
func acrCloudEventPushes(e cloudEvent) ([]imagePush, error) {
	p, err := acrEventGridPush(e.ID, e.Type, e.Time, e.Data)
	if err != nil {
		return nil, err
	}
	return []imagePush{p}, nil
}

// acrEventGridPush decodes the data of an acrImagePushed event, in either Event Grid
// schema (data already unwrapped from a JSON string, eventData). The push keeps the ACR
// event's own id, as the webhook does; the Event Grid event's id names it only when the
// data has none.
func acrEventGridPush(id, eventType string, at time.Time, data []byte) (imagePush, error) {
	d, err := decodeACREvent(data, "the data of "+eventType+" event "+id)
	if err != nil {
		return imagePush{}, err
	}
	p := d.push()
	if p.id == "" {
		p.id = id
	}
	if p.at.IsZero() {
		p.at = at
	}
	return p, nil
}

// acrAction bounds the metric label to ACR's webhook actions.
func acrAction(a string) string {
	switch a {
	case acrImagePush, "delete", "chart_push", "chart_delete":
		return a
	}
	return "other"
}
