package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StoredMessage is a message as a stream holds it.
type StoredMessage struct {
	// Seq is the message's sequence number in its stream.
	Seq     uint64
	Subject string
	// MsgID is the id it was published with (Nats-Msg-Id), the key of de-duplication.
	MsgID string
	Data  []byte
}

// Stored returns the messages stream holds on subject (wildcards allowed), oldest first,
// without consuming them: what was published, as tests and tools check it. A work
// queue's message is gone once acknowledged or terminated. It reads one message per
// request, so it is meant for streams of a few hundred messages, not for consuming.
func (b *Bus) Stored(ctx context.Context, stream, subject string) ([]StoredMessage, error) {
	ctx, cancel := defaultTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := b.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", stream, err)
	}
	var out []StoredMessage
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s from stream %s at sequence %d: %w", subject, stream, seq, err)
		}
		out = append(out, StoredMessage{Seq: m.Sequence, Subject: m.Subject, MsgID: m.Header.Get(jetstream.MsgIDHeader), Data: m.Data})
		seq = m.Sequence + 1
	}
}
