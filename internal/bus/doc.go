// Package bus owns promoter's NATS JetStream: the connection (or an embedded server when no
// URL is configured), the streams and the KV bucket the daemon needs, publishing with
// de-duplication, and readiness.
//
// It knows subjects and storage limits, not what the messages mean: decoding and handling
// belong to the packages that consume them.
package bus
