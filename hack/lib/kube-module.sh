# Sourced by hack/kube-assets.sh and hack/node.sh: how to build Kubernetes binaries from the
# Go module proxy.

# kube_module NAME VERSION: makes the current directory a throwaway module NAME that requires
# k8s.io/kubernetes@VERSION and replaces every staging module (which k8s.io/kubernetes points
# at ./staging) with its published v0.X release. Build with GOFLAGS=-mod=mod.
kube_module() {
  local name=$1 version=$2 gomod
  go mod init "$name" >/dev/null 2>&1
  gomod=$(go mod download -json "k8s.io/kubernetes@${version}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  {
    echo "require k8s.io/kubernetes ${version}"
    grep -oE '^[[:space:]]*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$gomod" |
      awk -v v="v0.${version#v1.}" '{print "replace " $1 " => " $1 " " v}'
  } >>go.mod
}

# kube_ldflags VERSION: -ldflags for a binary built in a kube_module directory, so that it
# reports VERSION (built this way it reports v0.0.0-master otherwise, which kubectl and Helm's
# kubeVersion checks cannot parse). The build date is the release's, from the module proxy.
kube_ldflags() {
  local version=$1 minor date flags=-s pkg
  minor=${version#v*.}
  minor=${minor%%.*}
  date=$(GOFLAGS=-mod=mod go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "k8s.io/kubernetes@${version}")
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  echo "$flags"
}
