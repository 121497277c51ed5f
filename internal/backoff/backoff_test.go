package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	p := Policy{Min: time.Second, Max: 10 * time.Second}
	for _, tc := range []struct {
		retry int
		want  time.Duration
	}{{0, time.Second}, {1, 2 * time.Second}, {3, 8 * time.Second}, {4, 10 * time.Second}, {60, 10 * time.Second}} {
		if got := p.Delay(tc.retry); got != tc.want {
			t.Errorf("Delay(%d) = %s, want %s", tc.retry, got, tc.want)
		}
		j := Policy{Min: p.Min, Max: p.Max, Jitter: true}
		for range 100 {
			if got := j.Delay(tc.retry); got < tc.want/2 || got > tc.want {
				t.Fatalf("jittered Delay(%d) = %s, want within [%s, %s]", tc.retry, got, tc.want/2, tc.want)
			}
		}
	}
	if got := (Policy{Min: 5 * time.Second, Max: time.Second}).Delay(3); got != 5*time.Second {
		t.Errorf("Max below Min: got %s, want Min", got)
	}
}

func TestSleepEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); err != context.Canceled {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("got %v", err)
	}
}
