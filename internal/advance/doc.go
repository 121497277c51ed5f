// Package advance moves each revision through its life once an event arrives: it routes
// the daemon's bus subjects to the component that owns each step (a registry push to the
// merger, a source change to the build dispatcher, a build result and a release tag to
// the revision state, a step to signing or promotion), queues the steps that follow a
// merge (and the promotions of release tags), and reconciles periodically so that a lost
// notification or a failed step is picked up again.
//
// It decides what happens next, never how: the revision's phases and transitions are
// types.Revision's (lifecycle.go), merging is internal/merge's, signing internal/sign's,
// promotion internal/promote's. Every state change is one of those transitions passed to
// state.Store.Update.
package advance
