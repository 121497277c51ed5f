// Package daemon wires the running service: it opens the bus, serves the webhook
// receivers, health and metrics endpoints, and runs the source poller and the consumers
// that move a revision from pushed to merged, signed and promoted (Run, `promoter serve`);
// and it runs a builder
// agent with its metrics server (RunAgent, `promoter builder`). It turns the configuration
// into the domain packages' values, which never see internal/config. It owns wiring and
// lifecycle only; each step's logic lives in its own package (events, merge, sign,
// promote, builders), and the revision's phases in types (lifecycle.go).
package daemon
