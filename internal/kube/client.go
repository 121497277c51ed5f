// Package kube connects to the Kubernetes API the way kubectl does, for the commands and
// the daemon that need it (builder agents, k8s:// signing keys).
package kube

import (
	"fmt"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Client connects using kubeconfig when it is set, else $KUBECONFIG or ~/.kube/config,
// else the in-cluster service account. userAgent names the caller in the apiserver's logs.
func Client(kubeconfig, userAgent string) (kubernetes.Interface, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration (run in a pod with a service account, or set KUBECONFIG / --kubeconfig): %w", err)
	}
	rc.UserAgent = userAgent
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return c, nil
}

// ForKeys returns a client when one of refs is a k8s://namespace/name key reference, and
// nil otherwise, so that commands without such keys never need a cluster.
func ForKeys(userAgent string, refs ...string) (kubernetes.Interface, error) {
	for _, r := range refs {
		if strings.HasPrefix(r, "k8s://") {
			return Client("", userAgent)
		}
	}
	return nil, nil
}
