package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace a test made: its own loopback, addresses, routes, iptables
// and bridges, which vanish with it. A one-node cluster lives in one, so its node IP, pod
// and service CIDRs (private ranges) exist nowhere but there.
//
// The test process stays in the host's namespace and reaches into this one per socket and
// per child process: Do runs a function on an OS thread moved into the namespace, and a
// socket made or a process started there belongs to the namespace for good. Only the
// network namespace is entered, as `nsenter --net` does: `ip netns exec` would also give
// the process a private mount namespace with /sys remounted, which hides the cgroup v1
// hierarchy kubelet and runc need.
type Netns struct {
	// Name is the namespace's name under /run/netns.
	Name string
	path string
}

// NewNetns creates a network namespace with its loopback up, deleted when the test ends
// (after everything registered later has been cleaned up).
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	n := &Netns{Name: "promoter-" + randomHex(4)}
	n.path = "/run/netns/" + n.Name
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		Require(t, "creating network namespace %s (needs root and iproute2): %v\n%s", n.Name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", n.Name).CombinedOutput(); err != nil {
			t.Errorf("deleting network namespace %s: %v\n%s", n.Name, err, out)
		}
	})
	if err := n.IP("link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	return n
}

// IP runs `ip -n NAME args...`.
func (n *Netns) IP(args ...string) error {
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s %s: %v\n%s", n.Name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Do runs f on an OS thread that has entered the namespace. The thread is never given
// back to the Go scheduler (its goroutine ends locked, so the runtime retires it), so no
// other goroutine ever runs in the namespace by accident.
func (n *Netns) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread dies with this goroutine.
		fd, err := unix.Open(n.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("opening %s: %w", n.path, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering %s: %w", n.path, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// Listen opens a listener inside the namespace.
func (n *Netns) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// DialContext dials from inside the namespace: a client's Transport.DialContext (or
// rest.Config.Dial) reaching addresses that exist only there.
func (n *Netns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Start starts cmd inside the namespace: the child is forked from a thread that entered
// it, so it and all it starts live there.
func (n *Netns) Start(cmd *exec.Cmd) error {
	return n.Do(cmd.Start)
}

// holds reports whether process pid is in this namespace.
func (n *Netns) holds(pid int) bool {
	want, err := os.Stat(n.path)
	if err != nil {
		return false
	}
	got, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid))
	return err == nil && os.SameFile(want, got)
}
