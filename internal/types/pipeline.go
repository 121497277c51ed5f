package types

import "time"

// Pipeline is one configured pipeline as the domain packages see it: parsed and validated
// once, when the configuration is loaded (config.Pipeline.Domain), never re-parsed per
// event. It is declarative data, passed by value.
//
// A pipeline with a Source builds its arch tags from the git repository on each push; one
// without is merge-only (see Builds): CI pushes the arch tags to Staging, and promoter
// merges, signs and promotes them all the same.
type Pipeline struct {
	Name string
	// Source is the git repository whose pushes trigger builds; its zero value makes the
	// pipeline merge-only, and then Build is zero too.
	Source Source
	// Platforms are built and merged, in this order.
	Platforms []Platform
	Build     BuildSpec
	// Staging is the repository arch tags are pushed to and the index is merged in.
	Staging Repository
	// ArchTag names each platform's tag of a revision.
	ArchTag ArchTag
	// Sign signs the merged index and its children.
	Sign    bool
	Promote []Destination
}

// Source is the git repository and branch a pipeline follows.
type Source struct {
	// Repo is the repository's URL, as webhooks name it and BuildKit fetches it.
	Repo   string
	Branch string
	// Poll is how often the branch head is listed (git ls-remote) to catch a push whose
	// webhook was lost; 0 never polls.
	Poll time.Duration
	// ReleaseTags are the git tags of Repo that are releases; none when empty.
	ReleaseTags ReleaseTags
}

// BuildSpec says how a pipeline's platforms are built.
type BuildSpec struct {
	// Executor is "kubernetes" (builder agents run Jobs) or "local" (in-process).
	Executor string
	// Context and Dockerfile are paths inside the source tree.
	Context, Dockerfile string
	// Base and Dir are the local executor's base image and source tree.
	Base, Dir string
	// GitSecret, Args and Secrets are what BuildRequest carries (see there).
	GitSecret string
	Args      []string
	Secrets   []BuildSecret
	// Cache is the registry build cache's reference pattern, "" without a cache; CacheMode
	// is BuildKit's export mode (min or max).
	Cache     CacheRef
	CacheMode string
	// Provenance is BuildKit's attest:provenance value, "" for none.
	Provenance string
}

// Destination is one repository a pipeline promotes to.
type Destination struct {
	To Repository
	// RequireSignature verifies the source before anything is copied.
	RequireSignature bool
	// MutableTags may be moved to a new revision (for example latest); no other tag is.
	MutableTags []string
}

// Builds reports whether promoter builds the pipeline's arch tags: it does when the
// pipeline has a source repository. A pipeline without one is merge-only: nothing is ever
// dispatched for it and source webhooks never match it; the arch tags someone else pushes
// (a CI job per platform) are merged, signed and promoted as any others.
func (p Pipeline) Builds() bool { return p.Source.Repo != "" }

// Keys are the pipeline's platforms as revision state keys them (Platform.String()), in
// its order.
func (p Pipeline) Keys() []string {
	keys := make([]string, len(p.Platforms))
	for i, pl := range p.Platforms {
		keys[i] = pl.String()
	}
	return keys
}

// ArchTags are the arch tags of revision, keyed by platform.
func (p Pipeline) ArchTags(revision string) map[string]string {
	return p.ArchTag.Tags(revision, p.Platforms)
}

// Destinations are the repositories the pipeline promotes to, in its order.
func (p Pipeline) Destinations() []string {
	out := make([]string, len(p.Promote))
	for i, d := range p.Promote {
		out[i] = string(d.To)
	}
	return out
}

// Destination finds the destination promoting to repository to.
func (p Pipeline) Destination(to string) (Destination, bool) {
	for _, d := range p.Promote {
		if string(d.To) == to {
			return d, true
		}
	}
	return Destination{}, false
}

// HasPlatform reports whether the pipeline builds pl.
func (p Pipeline) HasPlatform(pl Platform) bool {
	for _, q := range p.Platforms {
		if q == pl {
			return true
		}
	}
	return false
}
