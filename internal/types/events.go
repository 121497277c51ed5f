package types

import "time"

// Subjects on the bus. Every subject lives in one of two streams: events (limits
// retention, consumed by the daemon) and builds (work queue, consumed by builder agents).
const (
	// SubjectRegistryPush carries RegistryPush events, one per kept manifest push.
	SubjectRegistryPush = "promoter.events.registry"
	// SubjectSourceChanged carries SourceChanged events, one per accepted source push.
	SubjectSourceChanged = "promoter.events.source"
	// SubjectReleaseTagged carries ReleaseTagged events, one per accepted release tag push.
	SubjectReleaseTagged = "promoter.events.releases"
	// SubjectBuildResults carries BuildResult messages published by builder agents.
	SubjectBuildResults = "promoter.events.builds"
	// SubjectSteps carries Step messages: the signing and the promotions of merged
	// revisions, each retried on its own schedule.
	SubjectSteps = "promoter.events.steps"
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

// SourceChanged is a new head of a pipeline's source branch, reported by a push webhook
// or found by the source poller (internal/sources).
type SourceChanged struct {
	// ID is the provider's delivery id (X-GitHub-Delivery, GitLab's Idempotency-Key, the
	// generic body's id), kept for the logs; empty when the provider gave none or the
	// poller found the head. It is not the bus message id: MsgID is.
	ID       string    `json:"id"`
	Pipeline string    `json:"pipeline"`
	Repo     string    `json:"repo"`
	Ref      string    `json:"ref"`
	Revision string    `json:"revision"`
	Received time.Time `json:"received"`
}

// MsgID is the bus message id of the change, the one rule of every path that reports a
// source head: the GitHub, GitLab and generic webhooks and the poller. It is derived from
// the pipeline and the revision only, so a webhook, its redeliveries (by the forge or by
// hand, under another delivery id) and a poll that finds the same head are one message:
// JetStream acknowledges the later ones as duplicates for as long as the events stream
// remembers message ids (bus.DuplicateWindow, 24 hours). Past that window the same head is
// stored again and handled again, which is harmless: the revision is dispatched once
// (Revision.Dispatched), each build request has its own message id, and a platform whose
// arch tag exists is never rebuilt.
func (s SourceChanged) MsgID() string { return "source/" + s.Pipeline + "/" + s.Revision }

// ReleaseTagged is a push of a git tag of a pipeline's source repository that matches the
// pipeline's release patterns. Revision is the commit the tag names (an annotated tag's
// target, not the tag object), so it is the revision built from that commit.
type ReleaseTagged struct {
	// ID is the delivery id of the webhook, used as the bus message id.
	ID       string    `json:"id"`
	Pipeline string    `json:"pipeline"`
	Repo     string    `json:"repo"`
	Tag      string    `json:"tag"`
	Revision string    `json:"revision"`
	Received time.Time `json:"received"`
}

// StepKind names a step after the merge.
type StepKind string

// The steps after a merge.
const (
	StepSign    StepKind = "sign"    // sign the index and its children
	StepPromote StepKind = "promote" // promote the revision (or one release tag) to one destination
)

// Step asks a daemon to perform one step of a merged revision. Each step is its own
// message, so a failing destination is retried on its own schedule without holding up the
// others, and a restart keeps the schedule (the bus redelivers).
type Step struct {
	Kind     StepKind `json:"kind"`
	Pipeline string   `json:"pipeline"`
	Revision string   `json:"revision"`
	// Index is the merged index digest the step is for; a step of another index is moot.
	Index string `json:"index"`
	// Destination is the repository a promote step copies to.
	Destination string `json:"destination,omitempty"`
	// Tag is the release tag a promote step promotes; empty promotes the revision tag (and
	// moves the destination's mutable tags).
	Tag string `json:"tag,omitempty"`
}

// MsgID is the bus message id of the step: publishing it again is harmless.
func (s Step) MsgID() string {
	id := "step/" + string(s.Kind) + "/" + s.Pipeline + "/" + s.Revision + "/" + s.Index
	if s.Destination != "" {
		id += "/" + s.Destination
	}
	if s.Tag != "" {
		// A repository has no ':' after its last '/', so this cannot be another destination.
		id += ":" + s.Tag
	}
	return id
}
