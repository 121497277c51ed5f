// Package registry owns how promoter talks to OCI registries: credentials from the docker
// config (and its credential helpers), plain HTTP for hosts configured as insecure, the
// retrying transport and the one retry policy of operations it cannot replay
// (RetryPolicy.Do, RetryAfterError), the user agent, what registries' answers mean
// (IsNotFound, CheckError, IsAttestation), and the cosign tag scheme (AccessoryTag,
// IsAccessoryTag). Every package that reads or writes a registry gets its
// go-containerregistry options from here, so they all behave the same.
//
// It must not know about pipelines, revisions or signatures.
package registry
