// Command pause is the sandbox ("pause") image of the test cluster (testenv.StartKubeCluster):
// it holds a pod's namespaces open, reaps the zombies re-parented to it (it is PID 1 when
// the pod shares its process namespace) and exits on SIGTERM or SIGINT. It is built from
// this source and pushed to the node's own registry, since nothing may be pulled from
// registry.k8s.io.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
