package builders

import (
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RoleName is the name of the Role the builder agent needs.
const RoleName = "promoter-builder"

// Role is everything the Kubernetes executor does, in one namespace: create Jobs, follow
// them (get, watch), delete abandoned ones, and read the failed build's pod and log for
// the failure reason. Nothing cluster-wide, no Secrets (the registry Secret is mounted by
// the kubelet, never read by the agent), no pod creation (the Job controller does that).
func Role(namespace string) rbacv1.Role {
	return rbacv1.Role{
		TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      RoleName,
			Namespace: namespace,
			Labels:    map[string]string{LabelManagedBy: "promoter"},
		},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create", "get", "watch", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
		},
	}
}
