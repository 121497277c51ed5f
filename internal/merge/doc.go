// Package merge assembles per-platform images into one deterministic OCI image index.
//
// Build and Push are the mechanism, shared by the daemon and `promoter merge`: each child's
// manifest and config are fetched, the config's platform is checked against the expected
// one, BuildKit's image-plus-attestation indexes are flattened, and the index is written
// only if its tag does not exist yet (tags are immutable). Merger is the daemon's use of
// it: it records arch-tag pushes per revision in the KV store and merges when a revision
// is complete; Reconcile finds complete revisions whose notifications were lost.
package merge
