// Command rusage runs a command and prints the peak resident set size of that process,
// from wait4's rusage (ru_maxrss), as the last line of stderr: "maxrss_kib=N". It exits
// with the command's status.
//
// The bench measures promoter's peak RSS through it because Linux keeps the RSS high-water
// mark of the process that starts a child across the child's exec (Go's os/exec clones
// with CLONE_VM, and exec records the old address space's peak): measured directly, a
// child of the bench reports at least the bench's own peak. Started from this small
// process, the floor is this process's few MiB.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rusage COMMAND [ARG...]")
		os.Exit(2)
	}
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintln(os.Stderr, "rusage:", err)
		os.Exit(2)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		fmt.Fprintf(os.Stderr, "maxrss_kib=%d\n", ru.Maxrss)
	}
	os.Exit(cmd.ProcessState.ExitCode())
}
