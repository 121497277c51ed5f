// Package registry owns how promoter talks to OCI registries: credentials from the docker
// config and cloud keychains, plain HTTP for hosts configured as insecure, the retrying
// transport, and the user agent. Every package that reads or writes a registry gets its
// go-containerregistry options from here, so they all behave the same.
//
// It must not know about pipelines, revisions or signatures.
package registry
