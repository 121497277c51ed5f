package types

import "time"

// BuildRequest asks a builder agent to build one platform of one revision and push it to
// Image (the staging repository and arch tag).
type BuildRequest struct {
	Pipeline string   `json:"pipeline"`
	Revision string   `json:"revision"`
	Platform Platform `json:"platform"`
	// SourceRepo is the git URL of the source.
	SourceRepo string `json:"sourceRepo"`
	// Context and Dockerfile are paths inside the source tree.
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile"`
	// Image is "<staging>:<archTag>", where the result is pushed.
	Image string `json:"image"`
}

// MsgID is the bus message id of the request: a redelivered webhook never builds twice.
func (r BuildRequest) MsgID() string {
	return r.Pipeline + "/" + r.Revision + "/" + r.Platform.String()
}

// BuildOutcome says how a build ended.
type BuildOutcome string

// Build outcomes.
const (
	BuildSucceeded BuildOutcome = "succeeded"
	BuildFailed    BuildOutcome = "failed"
)

// BuildResult reports the end of one attempt of a BuildRequest.
type BuildResult struct {
	Request  BuildRequest  `json:"request"`
	Outcome  BuildOutcome  `json:"outcome"`
	Reason   string        `json:"reason,omitempty"`
	Job      string        `json:"job,omitempty"`
	Attempt  int           `json:"attempt"`
	Final    bool          `json:"final"`
	Duration time.Duration `json:"duration"`
}
