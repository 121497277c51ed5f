package types

import "time"

// Subjects on the bus. Every subject lives in one of two streams: events (limits
// retention, consumed by the daemon) and builds (work queue, consumed by builder agents).
const (
	// SubjectRegistryPush carries RegistryPush events, one per kept manifest push.
	SubjectRegistryPush = "promoter.events.registry"
	// SubjectSourceChanged carries SourceChanged events, one per accepted source push.
	SubjectSourceChanged = "promoter.events.source"
	// SubjectBuildResults carries BuildResult messages published by builder agents.
	SubjectBuildResults = "promoter.events.builds"
	// SubjectBuildsPrefix prefixes BuildRequest subjects: promoter.builds.<os>.<arch>[.<variant>].
	SubjectBuildsPrefix = "promoter.builds."
)

// BuildSubject is the work-queue subject of builds for platform p.
func BuildSubject(p Platform) string { return SubjectBuildsPrefix + p.Token() }

// RegistryPush is a manifest pushed by tag to a pipeline's staging repository under one of
// its arch tags, as kept by the registry receiver.
type RegistryPush struct {
	// ID is the registry's event id, used as the bus message id for de-duplication.
	ID        string    `json:"id"`
	Pipeline  string    `json:"pipeline"`
	Revision  string    `json:"revision"`
	Platform  Platform  `json:"platform"`
	Tag       string    `json:"tag"`
	Digest    string    `json:"digest"`
	MediaType string    `json:"mediaType"`
	Timestamp time.Time `json:"timestamp"`
}

// SourceChanged is a push to a pipeline's source repository and branch.
type SourceChanged struct {
	// ID is the delivery id of the webhook, used as the bus message id.
	ID       string    `json:"id"`
	Pipeline string    `json:"pipeline"`
	Repo     string    `json:"repo"`
	Ref      string    `json:"ref"`
	Revision string    `json:"revision"`
	Received time.Time `json:"received"`
}
