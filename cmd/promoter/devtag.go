package main

// devHowTo says how to get `promoter dev`. It is its own build (-tags dev) so that the
// registry server it runs in-process (internal/localregistry: distribution's registry,
// its storage drivers, redis and OpenTelemetry, about 180 packages) stays out of the
// binary that runs `serve`; a binary built without the tag answers `promoter dev` with this.
const devHowTo = `promoter dev is built only with the Go build tag "dev", so that the registry
server it runs stays out of the binary that runs serve. From a clone of the repository:

  go run -tags dev ./cmd/promoter dev --demo

or install a binary that has it:

  go install -tags dev github.com/promoter-dev/promoter/cmd/promoter@latest`
