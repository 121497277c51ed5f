package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/daemon"
	"github.com/promoter-dev/promoter/internal/kube"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

type builderOptions struct {
	configFile  string
	kubeconfig  string
	executor    string
	concurrency int
}

func newBuilderCmd(g *globalOptions) *cobra.Command {
	o := &builderOptions{}
	cmd := &cobra.Command{
		Use:   "builder",
		Short: "Run a builder agent: build the requests of some platforms as Kubernetes Jobs",
		Long: `Run a builder agent. It connects to the daemon's NATS server, takes the build requests
of its platforms from the builds work queue (several agents of one platform share the work),
and runs each as a BuildKit rootless Job in --namespace, on a node of the platform's
architecture. It publishes a result per attempt, retries failed builds with a growing delay
up to builder.maxAttempts, and then reports the build failed for good.

The agent needs only the namespaced Role printed by the chart (create/get/watch/delete Jobs,
get/list Pods, get pods/log) and a namespace labelled
pod-security.kubernetes.io/enforce=privileged: no pod is privileged, but rootless BuildKit
needs Unconfined seccomp and AppArmor profiles, which the baseline level forbids.

--executor local builds in-process instead (the source tree of each local pipeline as a
layer on its base image), for development without a cluster.`,
		Example: `  promoter builder --platforms linux/arm64 --namespace promoter-builds --nats-url nats://promoter-nats:4222
  promoter builder --platforms linux/amd64,linux/arm/v7 --nats-url nats://127.0.0.1:4222 --config promoter.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(config.Input{File: o.configFile, Flags: map[string]*pflag.Flag{
				"builder.platforms": cmd.Flags().Lookup("platforms"),
				"builder.namespace": cmd.Flags().Lookup("namespace"),
				"nats.url":          cmd.Flags().Lookup("nats-url"),
				"metrics":           cmd.Flags().Lookup("metrics"),
				"logLevel":          cmd.Root().PersistentFlags().Lookup("log-level"),
			}})
			if err != nil {
				return err
			}
			if err := daemon.CheckAgentConfig(cfg); err != nil {
				return err
			}
			log, err := newLogger(cmd.ErrOrStderr(), cfg.LogLevel, cfg.LogFormat)
			if err != nil {
				return err
			}
			reg := g.registry()
			reg.Insecure = cfg.InsecureHosts()
			exec, err := o.newExecutor(cfg, reg, log)
			if err != nil {
				return err
			}
			return daemon.RunAgent(cmd.Context(), cfg, exec,
				daemon.WithLogger(log), daemon.WithAgentOptions(builders.WithConcurrency(o.concurrency)))
		},
	}
	cmd.Flags().StringVarP(&o.configFile, "config", "c", "", "YAML configuration file (the builder section; pipelines for --executor local)")
	cmd.Flags().StringSlice("platforms", nil, "platforms to build, os/arch[/variant], comma-separated (builder.platforms)")
	cmd.Flags().String("namespace", config.DefaultString("builder.namespace"), "namespace of the build Jobs (builder.namespace)")
	cmd.Flags().String("nats-url", "", "NATS server URLs of the daemon (nats.url)")
	cmd.Flags().String("metrics", config.DefaultString("metrics"), "address of /metrics, /healthz and /readyz, empty to disable (metrics)")
	cmd.Flags().StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; empty uses the in-cluster service account, else $KUBECONFIG or ~/.kube/config")
	cmd.Flags().StringVar(&o.executor, "executor", string(types.ExecutorKubernetes), "how to build: kubernetes (Jobs) or local (in-process, development)")
	cmd.Flags().IntVar(&o.concurrency, "concurrency", 2, "builds of one platform this agent runs at once")
	return cmd
}

func (o *builderOptions) newExecutor(cfg *config.Config, reg registry.Client, log *slog.Logger) (builders.Executor, error) {
	switch types.Executor(o.executor) {
	case types.ExecutorKubernetes:
		client, err := kube.Client(o.kubeconfig, "promoter-builder")
		if err != nil {
			return nil, err
		}
		return builders.NewKubernetes(client, daemon.JobSettings(cfg.Builder), builders.WithLogger(log))
	case types.ExecutorLocal:
		return builders.NewLocal(reg, cfg.DomainPipelines(), builders.WithLogger(log))
	}
	return nil, fmt.Errorf("--executor %q: want kubernetes or local", o.executor)
}
