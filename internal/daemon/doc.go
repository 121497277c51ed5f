// Package daemon wires the running service: it opens the bus, serves the webhook
// receivers, health and metrics endpoints, and runs the consumers that move a revision
// from pushed to merged, signed and promoted. It owns wiring and lifecycle only; each
// step's logic lives in its own package (events, merge, sign, promote, builders).
package daemon
