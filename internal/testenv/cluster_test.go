package testenv

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestKubeClusterRunsPods starts the one-node cluster and runs a pod from the node's
// registry as a restricted pod would run: it gets an address in the pod CIDR, resolves
// the kubernetes Service through cluster DNS, reaches the apiserver through the Service
// IP (kube-proxy), and its log is read through the apiserver from the kubelet. When the
// test ends, teardown reports anything the node left behind.
func TestKubeClusterRunsPods(t *testing.T) {
	c := StartKubeCluster(t)
	ctx := context.Background()
	image := c.Registry.Host + "/busybox:1"
	c.Push(t, image, BusyboxImage(t, "linux/amd64"))

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "smoke", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	yes, uid := true, int64(1000)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "smoke"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: &yes, RunAsUser: &uid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:  "hello",
				Image: image,
				Command: []string{"/bin/sh", "-c", `echo "hello from $(hostname) as $(id -u)"
nslookup kubernetes.default.svc.cluster.local
echo | nc -w 3 kubernetes.default.svc.cluster.local 443 && echo "apiserver reachable"`},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: new(bool),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	if _, err := c.Client.CoreV1().Pods("smoke").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *corev1.Pod
	err := WaitFor(2*time.Minute, func() error {
		p, err := c.Client.CoreV1().Pods("smoke").Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			return err
		}
		got = p
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		return nil
	})
	logs, _ := c.Client.CoreV1().Pods("smoke").GetLogs("hello", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil || got.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("pod: %v, status %+v\nlogs:\n%s\n%s", err, got.Status, logs, c.logTails(15))
	}
	t.Logf("pod %s/%s on %s, IP %s:\n%s", got.Namespace, got.Name, got.Spec.NodeName, got.Status.PodIP, logs)
	ip, err := netip.ParseAddr(got.Status.PodIP)
	if err != nil || !netip.MustParsePrefix(clusterPodCIDR).Contains(ip) {
		t.Errorf("pod IP %q is not in the pod CIDR %s", got.Status.PodIP, clusterPodCIDR)
	}
	for _, want := range []string{"hello from hello as 1000", "apiserver reachable"} {
		if !strings.Contains(string(logs), want) {
			t.Errorf("the pod's log lacks %q", want)
		}
	}
}
