package bus

import (
	"strings"
	"testing"

	"github.com/promoter-dev/promoter/internal/types"
)

// TestStreamsHoldEverySubject: every subject promoter publishes on is stored by exactly one
// stream; a subject outside them would be refused by JetStream (no stream) at publish.
func TestStreamsHoldEverySubject(t *testing.T) {
	subjects := []string{
		types.SubjectRegistryPush, types.SubjectSourceChanged, types.SubjectReleaseTagged,
		types.SubjectBuildResults, types.SubjectSteps, types.BuildSubject(types.MustPlatform("linux/arm/v7")),
	}
	for _, subject := range subjects {
		var in []string
		for _, cfg := range streamConfigs(1) {
			for _, filter := range cfg.Subjects {
				if subjectMatches(filter, subject) {
					in = append(in, cfg.Name)
				}
			}
		}
		if len(in) != 1 {
			t.Errorf("subject %s is in streams %v, want exactly one", subject, in)
		}
	}
}

// subjectMatches is NATS subject matching: '*' is one token, '>' the rest.
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(f) == len(s)
}
