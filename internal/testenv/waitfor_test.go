package testenv

import (
	"errors"
	"testing"
	"time"
)

func TestWaitFor(t *testing.T) {
	errNotYet := errors.New("not yet")
	errExited := errors.New("exited")
	tests := []struct {
		name      string
		succeedAt int   // the call that succeeds; 0: none
		giveUpAt  int   // the call that gives up; 0: none
		want      error // errors.Is
		wantCalls int   // at most
	}{
		{name: "at once", succeedAt: 1, wantCalls: 1},
		{name: "after a few polls", succeedAt: 3, wantCalls: 3},
		{name: "never: the last error after the timeout", want: errNotYet, wantCalls: 10},
		{name: "given up", giveUpAt: 2, want: errExited, wantCalls: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := WaitFor(500*time.Millisecond, func() error {
				calls++
				switch calls {
				case tt.succeedAt:
					return nil
				case tt.giveUpAt:
					return GiveUp(errExited)
				}
				return errNotYet
			})
			if !errors.Is(err, tt.want) {
				t.Errorf("got error %v, want %v", err, tt.want)
			}
			if calls > tt.wantCalls {
				t.Errorf("got %d calls, want at most %d", calls, tt.wantCalls)
			}
			if tt.giveUpAt != 0 && (!errors.Is(err, ErrGiveUp) || err.Error() != errExited.Error()) {
				t.Errorf("got %v, want %v marked ErrGiveUp with its own message", err, errExited)
			}
		})
	}
}
