// Package builders turns a source change into per-platform images in the staging
// repository. It owns dispatch (one BuildRequest per platform on the builds work queue),
// the builder agent (a durable consumer per platform that runs an Executor and reports a
// BuildResult), the Kubernetes Job rendering, and two executors: Kubernetes, which runs
// BuildKit rootless in a Job, and Local, which builds in-process for development.
//
// It must not merge, sign or promote. Its one write of revision state is the source-change
// handler's (Dispatcher.SourceHandler records types.Revision.Dispatched); the merger
// records the BuildResults published on promoter.events.builds.
//
// # Retries and dead letters
//
// Retries belong to the agent, not to Kubernetes (the Job's backoffLimit is 0); its
// consumers run in bus.Consume's work-queue mode, which takes a request only when a build
// slot is free. A failed attempt publishes a BuildResult with Final=false and the request
// is redelivered after a growing delay, each delivery being the next attempt (a new Job).
// After maxAttempts failures, or at once on an error wrapping bus.ErrPermanent, the agent
// publishes the result with Final=true and the message is terminated: the daemon marks the
// revision failed on it. The consumer allows one delivery more than
// maxAttempts so that an attempt whose agent died mid-build (and so never reported) still
// ends in a Final result instead of silently disappearing from the queue.
//
// # Why the builder namespace is labelled privileged
//
// No build pod is privileged: the default Job runs BuildKit's rootless image as UID 1000
// without privileged: true and without added capabilities. But rootless BuildKit creates
// user and mount namespaces (through rootlesskit), which the runtime's default seccomp
// profile and the default AppArmor profile forbid, so the pod sets both to Unconfined, as
// BuildKit's own examples/kubernetes/job.rootless.yaml does. The Pod Security "baseline"
// level forbids Unconfined seccomp and AppArmor profiles, and "restricted" additionally
// demands allowPrivilegeEscalation: false, which rootlesskit's setuid newuidmap/newgidmap
// helpers need left at its default. The only Pod Security level that admits these pods
// is therefore "privileged":
//
//	kubectl label namespace promoter-builds pod-security.kubernetes.io/enforce=privileged
//
// Keep that namespace for build Jobs only: the label relaxes admission for everything in
// it, while the Role the agent gets (Role) allows nothing beyond creating, watching and
// deleting Jobs and reading their pods and logs there.
//
// On clusters with user namespaces (UserNamespacesSupport, on by default since
// Kubernetes 1.33 on a recent kernel and runtime), set builder.hostUsers: false. The pod
// then runs in its own user namespace: UID 1000 and the namespaces rootlesskit creates
// map to an unprivileged range of host UIDs, so even a container escape through the
// unconfined seccomp profile lands as a nobody on the node. The namespace label is still
// needed, because Pod Security checks the profiles, not the user mapping.
package builders
