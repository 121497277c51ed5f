// Package localregistry runs a real distribution/distribution v3 registry in-process on a
// loopback port, storing on the local filesystem. `promoter dev` starts its staging and
// production registries with it, and tests start theirs through internal/testenv, so both
// run against the same registry code and the same configuration.
//
// It is for development and tests only: nothing here is hardened for production traffic
// (plain HTTP, a fixed HTTP secret, bcrypt at its minimum cost). The daemon must not import
// it.
//
// # Logging is process-wide
//
// distribution v3 logs only through logrus' standard logger: its context package, which
// carries the logger, is internal to distribution, so no per-registry logger can be
// injected. Start therefore silences logrus' standard logger for the whole process, once
// (level error, output discarded), because the registry's access logs would otherwise bury
// the output of `promoter dev` and of tests. This is the one piece of package-level state
// the house style otherwise avoids; it is acceptable only because the package never runs
// inside the daemon, and nothing else in promoter logs through logrus.
package localregistry
