package bus

import "context"

// Publisher publishes a message with de-duplication; *Bus is one. Receivers, the
// dispatcher and the advancer take it, so their tests can record what they publish.
type Publisher interface {
	// Publish stores v as JSON on subject with msgID as its Nats-Msg-Id; duplicate is true
	// when the stream already had that id.
	Publish(ctx context.Context, subject, msgID string, v any) (duplicate bool, err error)
}
