//go:build unix

package sources

import (
	"os/exec"
	"syscall"
)

// killGroup runs cmd in a process group of its own and makes its cancellation kill the
// whole group: git leaves the network to helpers (git-remote-https, ssh), which would
// outlive a killed git.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
