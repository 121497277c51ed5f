//go:build tools

// Package deps pins the chosen dependencies while the packages that use them are written.
// Removed once every one of them is imported by real code.
package deps

import (
	_ "github.com/distribution/distribution/v3/notifications"
	_ "github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/google/go-containerregistry/pkg/authn"
	_ "github.com/google/go-containerregistry/pkg/crane"
	_ "github.com/google/go-containerregistry/pkg/v1/random"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/google/go-containerregistry/pkg/v1/validate"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/collectors"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/client_golang/prometheus/testutil"
	_ "github.com/sigstore/cosign/v3/pkg/cosign"
	_ "github.com/sigstore/cosign/v3/pkg/cosign/bundle"
	_ "github.com/sigstore/cosign/v3/pkg/cosign/kubernetes"
	_ "github.com/sigstore/cosign/v3/pkg/oci/mutate"
	_ "github.com/sigstore/cosign/v3/pkg/oci/remote"
	_ "github.com/sigstore/cosign/v3/pkg/oci/static"
	_ "github.com/sigstore/sigstore/pkg/signature"
	_ "github.com/sirupsen/logrus"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/viper"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/term"
	_ "k8s.io/api/batch/v1"
	_ "k8s.io/apimachinery/pkg/apis/meta/v1"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/rest"
	_ "k8s.io/client-go/tools/clientcmd"
	_ "sigs.k8s.io/yaml"
)
