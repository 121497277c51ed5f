// Package advance moves each revision through its life once an event arrives: its Router
// is the table of the daemon's bus subjects, each with the handler of the package that
// owns it (a registry push and a build result to the merger, a source change to the build
// dispatcher, a release tag and a step to the Advancer), decoding each message once and
// dropping one of a pipeline that is not configured the same way on every subject. The
// Advancer queues the steps that follow a merge (and the promotions of release tags) and
// performs them; the Reconciler periodically picks up a lost notification or a failed
// step again.
//
// It decides what happens next, never how: the revision's phases and transitions are
// types.Revision's (lifecycle.go), merging is internal/merge's, dispatching builds
// internal/builders', signing internal/sign's, promotion internal/promote's. Every state
// change is one of those transitions passed to state.Update.
package advance
