package testenv

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// teardown stops the cluster and removes everything it made, in an order that leaves
// nothing to recreate what is being removed, then reports what is left as test errors.
func (c *KubeCluster) teardown(t testing.TB) {
	// 1. Pods, while kubelet and containerd still run to stop them cleanly.
	if c.Kube != nil {
		c.deletePods()
	}
	// 2. The controllers first (nothing recreates pods), then the node, then containerd.
	for _, name := range []string{"kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "coredns", "containerd"} {
		c.stop(name)
	}
	// 3. Whatever still runs: containers (in the kubepods cgroups) and containerd's shims
	//    (in the node's namespace).
	_ = WaitFor(2*time.Second, func() error { // what survives is found by the steps below
		pids := append(kubepodsPIDs(), c.pidsInNetns()...)
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if len(pids) > 0 {
			return fmt.Errorf("%d processes left", len(pids))
		}
		return nil
	})
	// 4. Mounts under the cluster's directory: pod volumes, overlay snapshots, pod network
	//    namespaces (containerd keeps them under its state dir), deepest first.
	for _, m := range mountsUnder(c.dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Logf("unmounting %s: %v", m, err)
		}
	}
	// 5. The kubepods cgroups kubelet made in each v1 hierarchy.
	removeKubepodsCgroups()
	// 6. The global sysctls kubelet sets; the namespace's own vanish with it.
	for k, v := range c.sysctls {
		if v != "" && readSysctl(k) != v {
			_ = os.WriteFile("/proc/sys/"+strings.ReplaceAll(k, ".", "/"), []byte(v), 0o644)
		}
	}
	// 7. The fixed host paths: removed when the node made them, else only the container
	//    log links into the cluster's directory.
	for p, existed := range c.hostPaths {
		if !existed {
			_ = os.RemoveAll(p)
		}
	}
	for _, l := range c.logLinks() {
		_ = os.Remove(l)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		t.Errorf("removing %s: %v", c.dir, err)
	}
	if left := c.leftovers(); len(left) > 0 {
		t.Errorf("the cluster left behind:\n  %s", strings.Join(left, "\n  "))
	}
}

func (c *KubeCluster) deletePods() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nss, err := c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	zero := int64(0)
	for _, ns := range nss.Items {
		_ = c.Client.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	}
	// kubelet stops the containers once it sees the pods gone.
	_ = WaitFor(20*time.Second, func() error {
		if n := len(kubepodsPIDs()); n > 0 {
			return fmt.Errorf("%d container processes", n)
		}
		return nil
	})
}

// stop ends the component name (SIGTERM, then SIGKILL after 10 s), with its process group.
func (c *KubeCluster) stop(name string) {
	for _, p := range c.procs {
		if p.name != name || p.p.exit() != "" {
			continue
		}
		pid := p.p.cmd.Process.Pid
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-p.p.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-p.p.exited
		}
	}
}

// leftovers is what the cluster left on the machine.
func (c *KubeCluster) leftovers() []string {
	var left []string
	if pids := append(kubepodsPIDs(), c.pidsInNetns()...); len(pids) > 0 {
		left = append(left, fmt.Sprintf("processes %v", pids))
	}
	if ms := mountsUnder(c.dir); len(ms) > 0 {
		left = append(left, "mounts "+strings.Join(ms, ", "))
	}
	for _, cg := range kubepodsCgroups() {
		left = append(left, "cgroup "+cg)
	}
	for k, v := range c.sysctls {
		if got := readSysctl(k); got != v {
			left = append(left, fmt.Sprintf("sysctl %s = %s, was %s", k, got, v))
		}
	}
	if _, err := os.Stat(c.dir); err == nil {
		left = append(left, "directory "+c.dir)
	}
	for p, existed := range c.hostPaths {
		if _, err := os.Lstat(p); err == nil && !existed {
			left = append(left, "path "+p)
		}
	}
	for _, l := range c.logLinks() {
		left = append(left, "container log link "+l)
	}
	return left
}

// logLinks are kubelet's links in /var/log/containers to the cluster's pod logs.
func (c *KubeCluster) logLinks() []string {
	var out []string
	entries, _ := os.ReadDir("/var/log/containers")
	for _, e := range entries {
		l := filepath.Join("/var/log/containers", e.Name())
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, c.dir+"/") {
			out = append(out, l)
		}
	}
	return out
}

// pidsInNetns are the processes in the cluster's network namespace.
func (c *KubeCluster) pidsInNetns() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if c.Netns.holds(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cgroupV1Root is where the v1 hierarchies are mounted.
const cgroupV1Root = "/sys/fs/cgroup"

// kubepodsCgroups are the kubepods cgroups (and below) in every v1 hierarchy, deepest
// first.
func kubepodsCgroups() []string {
	var out []string
	hier, _ := os.ReadDir(cgroupV1Root)
	for _, h := range hier {
		root := filepath.Join(cgroupV1Root, h.Name(), "kubepods")
		if _, err := os.Stat(root); err != nil {
			continue
		}
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				out = append(out, path)
			}
			return nil
		})
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// kubepodsPIDs are the processes in the kubepods cgroups (the pids hierarchy holds all).
func kubepodsPIDs() []int {
	var pids []int
	for _, cg := range kubepodsCgroups() {
		if !strings.HasPrefix(cg, filepath.Join(cgroupV1Root, "pids")) {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func removeKubepodsCgroups() {
	for _, cg := range kubepodsCgroups() {
		_ = syscall.Rmdir(cg)
	}
}

// mountsUnder are the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// pauseImage builds testenv/pause (static) into dir and packs it as the sandbox image.
func pauseImage(dir string) (v1.Image, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "pause")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./internal/testenv/pause")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the pause binary: %v\n%s", err, out)
	}
	return fileImage(map[string]string{"/pause": bin}, []string{"/pause"})
}
