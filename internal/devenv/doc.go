// Package devenv runs the pieces `promoter dev` needs on loopback: real distribution v3
// registries in-process, with notifications wired to the daemon. Tests use the same code
// through internal/testenv.
//
// It is for development and tests only: nothing here is hardened for production traffic.
package devenv
