// Package registry owns how promoter talks to OCI registries: credentials from the docker
// config (and its credential helpers), plain HTTP for hosts configured as insecure, the
// retrying transport, the user agent, and what registries' answers mean (IsNotFound,
// Exists, IsAttestation). Every package that reads or writes a registry gets its
// go-containerregistry options from here, so they all behave the same.
//
// It must not know about pipelines, revisions or signatures.
package registry
