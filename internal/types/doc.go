// Package types holds the nouns every other package shares: platforms, arch-tag patterns,
// the events carried on the bus, build requests and results, and the per-revision state
// with its state machine (lifecycle.go: every phase a revision can be in, and every
// transition between them).
//
// It is a leaf: it imports nothing from this module, so any package may import it without
// creating a cycle. It holds data and pure functions only, never I/O.
package types
