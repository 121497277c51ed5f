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

	// The pipeline's build settings (build.*), carried in the request so that a builder
	// agent needs no pipeline configuration. They name Kubernetes Secrets, never hold
	// their values.

	// GitSecret is the Secret in the builder namespace with the source's credentials: key
	// "token" for an https URL, "ssh-privatekey" for an ssh or scp-style URL.
	GitSecret string `json:"gitSecret,omitempty"`
	// Args are build arguments, each NAME=value.
	Args []string `json:"args,omitempty"`
	// Secrets are the build secrets a Dockerfile's RUN --mount=type=secret can read.
	Secrets []BuildSecret `json:"secrets,omitempty"`
	// Cache is the registry build cache of this platform; nil builds without one.
	Cache *BuildCache `json:"cache,omitempty"`
	// Provenance is BuildKit's attest:provenance value (e.g. "mode=min"); empty attaches
	// no provenance.
	Provenance string `json:"provenance,omitempty"`
}

// BuildSecret is one build secret: key Key of Kubernetes Secret Secret, seen by the
// Dockerfile as secret ID.
type BuildSecret struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
	Key    string `json:"key"`
}

// BuildCache is a registry build cache: imported before the build and exported after it.
type BuildCache struct {
	// Ref is the image reference the cache is stored under.
	Ref string `json:"ref"`
	// Mode is BuildKit's cache export mode: "min" (the result's layers) or "max" (every
	// stage's).
	Mode string `json:"mode"`
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
	Request BuildRequest `json:"request"`
	Outcome BuildOutcome `json:"outcome"`
	Reason  string       `json:"reason,omitempty"`
	Job     string       `json:"job,omitempty"`
	// Digest is the manifest digest the build pushed under Request.Image, as the build
	// itself reported it (BuildKit's containerimage.digest); set when it succeeded. It is
	// what binds the arch tag to this build: the merge takes no other image.
	Digest   string        `json:"digest,omitempty"`
	Attempt  int           `json:"attempt"`
	Final    bool          `json:"final"`
	Duration time.Duration `json:"duration"`
}
