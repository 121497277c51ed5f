package bus

import "context"

// Publisher publishes a message with de-duplication; *Bus is one. Receivers, the
// dispatcher and the advancer take it, so their tests can record what they publish.
type Publisher interface {
	// Publish stores v as JSON on subject with msgID as its Nats-Msg-Id; duplicate is true
	// when the stream already had that id.
	Publish(ctx context.Context, subject, msgID string, v any) (duplicate bool, err error)
}

// Message is one message of Bus.PublishAll.
type Message struct {
	Subject string
	// MsgID is its Nats-Msg-Id: a message whose id the stream already has is not stored
	// again.
	MsgID string
	// Value is stored as JSON.
	Value any
}
