// Package bus owns promoter's NATS JetStream: the connection (or an embedded server when no
// URL is configured), the streams and the KV bucket the daemon needs, publishing with
// de-duplication, readiness, reading what a stream holds (Stored), and the one consumer
// loop (Consume): the daemon's consumers of the events stream and, in its work-queue mode,
// the builder agents' consumers of build requests. The loop takes a message only when a
// handler is free, heartbeats while it runs, and acknowledges, terminates (ErrPermanent)
// or redelivers it on the consumer's retry schedule.
//
// It knows subjects and storage limits, not what the messages mean: handling belongs to
// the packages that consume them (Decode only turns a message's JSON into the handler's
// type). It must not hand out its connection: everything that reads or writes the bus goes
// through its methods, so each rule of the protocol has one copy.
package bus
