//go:build !unix

package sources

import "os/exec"

// killGroup leaves cmd as it is: its cancellation kills git alone.
func killGroup(*exec.Cmd) {}
