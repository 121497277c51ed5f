// Package merge assembles per-platform images into one deterministic OCI image index.
//
// Build and Push are the mechanism, shared by the daemon and `promoter merge`: each child's
// manifest and config are fetched, the config's platform is checked against the expected
// one, BuildKit's image-plus-attestation indexes are flattened, and the index is written
// only if its tag does not exist yet (tags are immutable).
//
// Merger is the daemon's use of it, and treats the staging registry as the source of
// truth: a push notification only says "look at this revision now". Merger resolves every
// arch tag's current digest from the registry, records that in the revision's KV state,
// and merges under a lease once every platform is there; a notification that disagrees
// with the registry is stale and only counted. Reconcile finds complete revisions whose
// notifications were lost. PushHandler and BuildResultHandler are the daemon's handlers
// of registry pushes and build results; they hand a revision on to what follows (Next)
// and do not sign or promote it themselves. The package must not trust an event's
// digest, and does not sign or promote.
package merge
