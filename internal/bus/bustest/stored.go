package bustest

import (
	"context"
	"testing"

	"github.com/promoter-dev/promoter/internal/bus"
)

// Stored returns the messages stream holds on subject, oldest first (bus.Bus.Stored), and
// fails the test when they cannot be read.
func Stored(t testing.TB, b *bus.Bus, stream, subject string) []bus.StoredMessage {
	t.Helper()
	msgs, err := b.Stored(context.Background(), stream, subject)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// Subjects counts msgs by subject, as a stream's state reports them.
func Subjects(msgs []bus.StoredMessage) map[string]uint64 {
	n := map[string]uint64{}
	for _, m := range msgs {
		n[m.Subject]++
	}
	return n
}
