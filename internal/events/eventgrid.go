package events

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"
)

// eventGridEvent is one event in Azure Event Grid's own event schema (Microsoft Learn,
// "Azure Event Grid event schema"), the default schema of an event subscription: Event
// Grid posts a JSON array of them as application/json.
type eventGridEvent struct {
	ID              string          `json:"id"`
	Topic           string          `json:"topic"`
	Subject         string          `json:"subject"`
	EventType       string          `json:"eventType"`
	EventTime       time.Time       `json:"eventTime"`
	Data            json.RawMessage `json:"data"`
	DataVersion     string          `json:"dataVersion"`
	MetadataVersion string          `json:"metadataVersion"`
}

// eventGridValidation is the event Event Grid sends, alone, when a subscription in its own
// schema is created or changed: the subscription activates once the endpoint answers
// {"validationResponse": <data.validationCode>} (Microsoft Learn, "Webhook event
// delivery"), or once someone opens data.validationUrl within five minutes.
const eventGridValidation = "Microsoft.EventGrid.SubscriptionValidationEvent"

// isJSONArray reports whether body is a JSON array (Event Grid's own schema), rather than an
// object (an ACR webhook).
func isJSONArray(body []byte) bool {
	b := bytes.TrimSpace(body)
	return len(b) > 0 && b[0] == '['
}

// classifyEventGrid reads a delivery in Event Grid's own schema to source's endpoint. A
// subscription validation is answered here, synchronously, and returns errAnswered: the
// answer only echoes the code the request carries and enables no event, so it needs no
// token (Event Grid may not send the subscription's delivery headers with it). Every other
// delivery is authenticated first; ACR's image pushes are classified, its other events
// and any other type acknowledged and ignored.
func (r *Receiver) classifyEventGrid(w http.ResponseWriter, source string, body []byte, authenticate func() error) ([]registryOutcome, error) {
	var events []eventGridEvent
	if err := decodeJSON(body, &events, false); err != nil {
		return nil, reject(http.StatusBadRequest, "decoding Event Grid events (a JSON array in Event Grid's schema): %v", err)
	}
	for i, e := range events {
		if e.ID == "" || e.EventType == "" {
			return nil, reject(http.StatusBadRequest, "event %d is not an Event Grid event: id %q and eventType %q must both be set", i, e.ID, e.EventType)
		}
	}
	for _, e := range events {
		if e.EventType == eventGridValidation {
			return nil, r.answerEventGridValidation(w, source, e)
		}
	}
	if err := authenticate(); err != nil {
		return nil, err
	}
	var out []registryOutcome
	for _, e := range events {
		switch {
		case e.EventType == acrImagePushed:
			data, err := eventData(e.Data)
			if err != nil {
				return nil, reject(http.StatusBadRequest, "event %s: %v", e.ID, err)
			}
			p, err := acrEventGridPush(e.ID, e.EventType, e.EventTime, data)
			if err != nil {
				return nil, err
			}
			kept, err := r.classifyAll(source, []imagePush{p})
			if err != nil {
				return nil, reject(http.StatusBadRequest, "event %s: %v", e.ID, err)
			}
			out = append(out, kept...)
		default:
			out = append(out, ignored("other", cloudEventReason(e.EventType)))
		}
	}
	return out, nil
}

// answerEventGridValidation answers a subscription validation event with its code, and
// counts and logs it.
func (r *Receiver) answerEventGridValidation(w http.ResponseWriter, source string, e eventGridEvent) error {
	data, err := eventData(e.Data)
	if err != nil {
		return reject(http.StatusBadRequest, "event %s: %v", e.ID, err)
	}
	var d struct {
		ValidationCode string `json:"validationCode"`
		ValidationURL  string `json:"validationUrl"`
	}
	if err := json.Unmarshal(data, &d); err != nil || d.ValidationCode == "" {
		return reject(http.StatusBadRequest, "%s %s has no data.validationCode", eventGridValidation, e.ID)
	}
	writeJSON(w, http.StatusOK, map[string]string{"validationResponse": d.ValidationCode})
	r.metrics.EventsReceived.WithLabelValues(source, "validation", "ignored", reasonHandshake).Inc()
	// The validation URL carries a token of Event Grid's: never logged.
	r.log.Info("Event Grid subscription validation answered", "source", source, "topic", e.Topic, "event_id", e.ID)
	return errAnswered
}
