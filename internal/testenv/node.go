package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// Node plays the kubelet and the Job controller for the build Jobs of one namespace: for each
// new Job it runs the pod template's first container as written, with real rootless BuildKit,
// and reports the outcome the way Kubernetes does (a Pod whose container terminated with the
// exit code and the termination message: what the container wrote to its
// terminationMessagePath, else, under FallbackToLogsOnError and on failure, the log tail; the
// Job's Complete or Failed condition).
//
// What the node does not do: pull the container's image. The image is assumed to be
// moby/buildkit's rootless image, and the node provides what that image holds: its
// environment (HOME=/home/user, USER=user, XDG_RUNTIME_DIR=/run/user/1000,
// TMPDIR=/home/user/.local/tmp, BUILDKIT_HOST) and its programs (buildkitd, buildctl,
// buildctl-daemonless.sh from the BuildKit's Dir, first on PATH; rootlesskit and friends from
// the host).
//
// Container paths. Each Job gets a root directory R (short, because BuildKit's sockets live
// under XDG_RUNTIME_DIR and a socket path has at most 108 bytes), and a container path P is
// R+P on the host:
//   - every volumeMount's mountPath is materialised at R+mountPath: an emptyDir as an empty
//     directory owned by the build user, a Secret (read from the apiserver) as one file per
//     key or per item, mode defaultMode or 0644, owned by root, as the kubelet writes them;
//     other volume types fail the Job;
//   - the image's HOME, XDG_RUNTIME_DIR and TMPDIR exist under R, owned by the build user;
//   - in env values and in args, a mountPath or one of those image directories that starts
//     the value or follows "=", ",", " " or "unix://" is replaced by R+path. So
//     DOCKER_CONFIG=/home/user/.docker becomes R/home/user/.docker, where the registry
//     Secret's config.json is, and BuildKit's state mount /home/user/.local/share/buildkit
//     is R/home/user/.local/share/buildkit, which buildkitd uses through HOME. Nothing else
//     in command or args is changed.
//
// The container runs as the BuildKit's build user, whatever numeric runAsUser the pod asks
// for (the rootless image's 1000 may belong to someone else on this machine), but only when
// the pod asks for a non-root user: a pod without runAsUser, or with 0, fails. The Job's
// activeDeadlineSeconds bounds the run (the Job then fails with DeadlineExceeded). The
// directory of terminationMessagePath stays root's, as a pod's /dev is.
//
// Node is the fast stand-in, for tests about what promoter does with a build (its digest,
// its failure, a push-over). StartKubeCluster's real node is the one that decides whether
// a Job works in a pod: Node does not check the pod's and container's securityContext
// beyond non-root (seccomp and AppArmor profiles, capabilities, allowPrivilegeEscalation,
// runAsGroup), fsGroup and Secret file ownership, emptyDir semantics beyond a directory,
// ttlSecondsAfterFinished, nodeSelector and tolerations, image pulls and the registry
// Secret as a pull secret, resource limits, or the pod's own network (the build reaches
// the host's loopback, which a pod cannot).
type Node struct {
	t  testing.TB
	bk *BuildKit
	c  kubernetes.Interface
	ns string

	mu     sync.Mutex
	seq    int
	runs   []NodeRun
	before func(NodeRun)
}

// BeforeFinish makes the node call fn after each Job's container exited and before it
// reports the pod and the Job finished: the moment between a build's push and the
// agent's result, where a test can push over what the build pushed.
func (n *Node) BeforeFinish(fn func(NodeRun)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.before = fn
}

// NodeRun is one Job the node ran.
type NodeRun struct {
	Job      string
	Argv     []string // command and args as run, after path mapping
	ExitCode int      // -1 when the container never started
	Took     time.Duration
	Output   string // stdout and stderr, interleaved
	// Message is what the container left in its terminationMessagePath file.
	Message string
}

// Image environment of moby/buildkit's rootless image (its Dockerfile's ENV lines).
const (
	imageHome       = "/home/user"
	imageUser       = "user"
	imageRuntimeDir = "/run/user/1000"
	imageTmpDir     = "/home/user/.local/tmp"
)

// StartNode watches the Jobs of namespace with c (an admin client: it also reads Secrets and
// writes Pods and Job status) and runs each new one with bk, until the test ends.
func StartNode(t testing.TB, c kubernetes.Interface, namespace string, bk *BuildKit) *Node {
	t.Helper()
	n := &Node{t: t, bk: bk, c: c, ns: namespace}
	ctx, cancel := context.WithCancel(context.Background())
	// The ServiceAccount admission plugin refuses pods whose account does not exist, and no
	// controller-manager creates "default" here.
	_, err := c.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: namespace},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		cancel()
		t.Fatalf("node: creating the default service account: %v", err)
	}
	w, err := c.BatchV1().Jobs(namespace).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		t.Fatalf("node: watching jobs: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for ev := range w.ResultChan() {
			if j, ok := ev.Object.(*batchv1.Job); ok && ev.Type == watch.Added {
				wg.Go(func() { n.run(ctx, j) })
			}
		}
	})
	t.Cleanup(func() { cancel(); w.Stop(); wg.Wait() })
	return n
}

// Runs returns the Jobs run so far, in the order they finished.
func (n *Node) Runs() []NodeRun {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.runs)
}

func (n *Node) run(ctx context.Context, j *batchv1.Job) {
	n.mu.Lock()
	n.seq++
	root := filepath.Join(n.bk.Home, "j", strconv.Itoa(n.seq))
	n.mu.Unlock()

	start := time.Now()
	pod := n.createPod(ctx, j)
	run := NodeRun{Job: j.Name, ExitCode: -1}
	var reason, message string
	argv, env, dir, err := n.prepare(ctx, j, root)
	if err != nil {
		reason, message = "NodeRefused", err.Error()
		run.Output = err.Error()
	} else {
		run.Argv = argv
		runCtx := ctx
		if d := j.Spec.ActiveDeadlineSeconds; d != nil {
			var cancel context.CancelFunc
			runCtx, cancel = context.WithTimeout(ctx, time.Duration(*d)*time.Second)
			defer cancel()
		}
		var out bytes.Buffer
		cmd := n.bk.Command(runCtx, nil, argv[0], argv[1:]...)
		// Exactly the container's environment: not the BuildKit's own BUILDKITD_FLAGS and
		// retries, so a Job that forgets them fails as it would on a real node.
		cmd.Env, cmd.Dir = env, dir
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		run.Output = out.String()
		run.Message = n.terminationMessage(j, root)
		var ee *exec.ExitError
		switch {
		case err == nil:
			run.ExitCode = 0
		case runCtx.Err() != nil && ctx.Err() == nil:
			reason, message = "DeadlineExceeded", "Job was active longer than specified deadline"
		case errors.As(err, &ee):
			run.ExitCode = ee.ExitCode()
			reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
		default:
			reason, message = "NodeRefused", fmt.Sprintf("starting %s: %v", argv[0], err)
		}
	}
	run.Took = time.Since(start)
	n.mu.Lock()
	n.runs = append(n.runs, run)
	n.mu.Unlock()
	if ctx.Err() != nil {
		return // the test is over
	}
	n.t.Logf("node: job %s exited %d after %s", j.Name, run.ExitCode, run.Took.Round(time.Millisecond))
	n.mu.Lock()
	before := n.before
	n.mu.Unlock()
	if before != nil {
		before(run)
	}
	n.finishPod(ctx, pod, j, run)
	n.finishJob(ctx, j, start, reason, message)
	_ = os.RemoveAll(root)
}

// prepare materialises the pod's volumes and image directories under root and returns the
// command line, environment and working directory to run.
func (n *Node) prepare(ctx context.Context, j *batchv1.Job, root string) (argv, env []string, dir string, err error) {
	ps := j.Spec.Template.Spec
	c, err := runnableContainer(ps)
	if err != nil {
		return nil, nil, "", err
	}
	fs := containerFS{root: root, uid: -1, gid: -1}
	if n.bk.cred != nil {
		fs.uid, fs.gid = int(n.bk.cred.Uid), int(n.bk.cred.Gid)
	}
	if err := fs.imageDirs(); err != nil {
		return nil, nil, "", err
	}
	mounts, err := n.mountVolumes(ctx, ps, c, fs)
	if err != nil {
		return nil, nil, "", err
	}
	termPath, err := fs.terminationFile(c)
	if err != nil {
		return nil, nil, "", err
	}
	roots := append([]string{imageHome, imageRuntimeDir}, mounts...)
	mapPaths := pathMapper(root, append(roots, termPath))
	if env, err = n.containerEnv(root, c, mapPaths); err != nil {
		return nil, nil, "", err
	}
	for _, a := range append(slices.Clone(c.Command), c.Args...) {
		argv = append(argv, mapPaths(a))
	}
	dir = root + imageHome
	if c.WorkingDir != "" {
		dir = root + c.WorkingDir
		if err := fs.mkdir(dir, 0o755); err != nil {
			return nil, nil, "", fmt.Errorf("creating workingDir: %w", err)
		}
	}
	return argv, env, dir, nil
}

// runnableContainer is the pod's first container, if the node can run it: as a non-root
// user, with a command (the node runs no image entrypoint).
func runnableContainer(ps corev1.PodSpec) (corev1.Container, error) {
	if len(ps.Containers) == 0 {
		return corev1.Container{}, errors.New("the pod template has no containers")
	}
	c := ps.Containers[0]
	if err := checkNonRoot(ps.SecurityContext, c.SecurityContext); err != nil {
		return corev1.Container{}, err
	}
	if len(c.Command) == 0 {
		return corev1.Container{}, fmt.Errorf("container %s has no command; the node does not run image entrypoints", c.Name)
	}
	return c, nil
}

// containerFS is one container's file system: container path P is root+P on the host,
// and the build user (uid, gid; -1 when the tests run unprivileged) owns what the
// container may write.
type containerFS struct {
	root     string
	uid, gid int
}

// mkdir creates host directory p with mode, owned by the build user.
func (fs containerFS) mkdir(p string, mode os.FileMode) error {
	if err := os.MkdirAll(p, mode); err != nil {
		return err
	}
	// MkdirAll leaves existing parents alone; hand over every directory between root
	// and p (none of them is a Secret's).
	for d := p; fs.uid >= 0 && strings.HasPrefix(d, fs.root); d = filepath.Dir(d) {
		if err := os.Chown(d, fs.uid, fs.gid); err != nil {
			return err
		}
	}
	return os.Chmod(p, mode)
}

// imageDirs creates the rootless image's HOME, XDG_RUNTIME_DIR and TMPDIR.
func (fs containerFS) imageDirs() error {
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{imageHome, 0o755}, {imageRuntimeDir, 0o700}, {imageTmpDir, 0o755}} {
		if err := fs.mkdir(fs.root+d.path, d.mode); err != nil {
			return fmt.Errorf("creating %s: %w", d.path, err)
		}
	}
	return nil
}

// terminationFile creates the empty file the kubelet mounts at c's terminationMessagePath
// and reads back as the termination message (the build reports its digest there:
// builders.ReportedDigest); it returns that container path.
func (fs containerFS) terminationFile(c corev1.Container) (string, error) {
	termPath := c.TerminationMessagePath
	if termPath == "" {
		termPath = corev1.TerminationMessagePathDefault
	}
	// Its directory stays root's, as a pod's /dev is: a build that replaces the file (a
	// rename, as buildctl --metadata-file does) fails here as on a real node.
	if err := os.MkdirAll(filepath.Dir(fs.root+termPath), 0o755); err != nil {
		return "", fmt.Errorf("creating the termination message file: %w", err)
	}
	if err := os.WriteFile(fs.root+termPath, nil, 0o666); err != nil {
		return "", fmt.Errorf("creating the termination message file: %w", err)
	}
	if fs.uid >= 0 {
		if err := os.Chown(fs.root+termPath, fs.uid, fs.gid); err != nil {
			return "", fmt.Errorf("creating the termination message file: %w", err)
		}
	}
	return termPath, nil
}

// mountVolumes materialises each of c's volumeMounts under fs and returns their mount
// paths: an emptyDir as a directory of the build user's, a Secret as its files.
func (n *Node) mountVolumes(ctx context.Context, ps corev1.PodSpec, c corev1.Container, fs containerFS) ([]string, error) {
	// The kubelet gives Secret files to the pod's fsGroup; here that is the build user's
	// group, as the container's user is the build user.
	fsGroup := -1
	if ps.SecurityContext != nil && ps.SecurityContext.FSGroup != nil {
		fsGroup = fs.gid
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		volumes[v.Name] = v
	}
	var paths []string
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %s names no volume", m.Name)
		}
		if m.SubPath != "" {
			return nil, fmt.Errorf("volumeMount %s: the node does not support subPath", m.Name)
		}
		paths = append(paths, m.MountPath)
		if err := n.mount(ctx, v, fs, fs.root+m.MountPath, fsGroup); err != nil {
			return nil, fmt.Errorf("mounting volume %s at %s: %w", m.Name, m.MountPath, err)
		}
	}
	return paths, nil
}

// mount materialises volume v at host path target.
func (n *Node) mount(ctx context.Context, v corev1.Volume, fs containerFS, target string, fsGroup int) error {
	switch {
	case v.EmptyDir != nil:
		return fs.mkdir(target, 0o755)
	case v.Secret != nil:
		if err := fs.mkdir(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return n.writeSecret(ctx, v.Secret, target, fsGroup)
	default:
		return fmt.Errorf("the node supports only emptyDir and secret volumes")
	}
}

// containerEnv is the image's environment under root, then c's env with its paths mapped.
func (n *Node) containerEnv(root string, c corev1.Container, mapPaths func(string) string) ([]string, error) {
	env := []string{
		"HOME=" + root + imageHome,
		"USER=" + imageUser,
		"PATH=" + n.bk.Dir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"XDG_RUNTIME_DIR=" + root + imageRuntimeDir,
		"TMPDIR=" + root + imageTmpDir,
		"BUILDKIT_HOST=unix://" + root + imageRuntimeDir + "/buildkit/buildkitd.sock",
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			return nil, fmt.Errorf("env %s: the node does not support valueFrom", e.Name)
		}
		env = append(env, e.Name+"="+mapPaths(e.Value))
	}
	return env, nil
}

// checkNonRoot accepts a pod only when its container runs as a non-root user.
func checkNonRoot(pod *corev1.PodSecurityContext, c *corev1.SecurityContext) error {
	var uid *int64
	if pod != nil {
		uid = pod.RunAsUser
	}
	if c != nil && c.RunAsUser != nil {
		uid = c.RunAsUser
	}
	if uid == nil || *uid == 0 {
		return errors.New("the node runs build containers only with a non-root runAsUser")
	}
	return nil
}

// writeSecret writes the Secret's keys (or its items) into dir, as the kubelet does: an
// optional volume tolerates a missing Secret or key (the file is then absent), and with
// an fsGroup (gid >= 0) the files belong to that group.
func (n *Node) writeSecret(ctx context.Context, v *corev1.SecretVolumeSource, dir string, gid int) error {
	optional := v.Optional != nil && *v.Optional
	s, err := n.c.CoreV1().Secrets(n.ns).Get(ctx, v.SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional {
		s, err = &corev1.Secret{}, nil
	}
	if err != nil {
		return fmt.Errorf("reading secret %s/%s: %w", n.ns, v.SecretName, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if v.DefaultMode != nil {
		mode = os.FileMode(*v.DefaultMode)
	}
	items := v.Items
	if len(items) == 0 {
		for k := range s.Data {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
		}
	}
	for _, it := range items {
		data, ok := s.Data[it.Key]
		if !ok && optional {
			continue
		}
		if !ok {
			return fmt.Errorf("secret %s/%s has no key %s", n.ns, v.SecretName, it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		p := filepath.Join(dir, filepath.FromSlash(it.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, m); err != nil {
			return err
		}
		if err := os.Chmod(p, m); err != nil {
			return err
		}
		if gid >= 0 {
			if err := os.Chown(p, -1, gid); err != nil {
				return err
			}
		}
	}
	return nil
}

// pathMapper returns a function that prefixes root to each of the container paths roots
// where one starts s or follows "=", ",", " " or "unix://", and is followed by "/", ",", " "
// or the end.
func pathMapper(root string, roots []string) func(string) string {
	roots = slices.Clone(roots)
	slices.SortFunc(roots, func(a, b string) int { return len(b) - len(a) }) // longest first
	quoted := make([]string, len(roots))
	for i, r := range roots {
		quoted[i] = regexp.QuoteMeta(strings.TrimSuffix(r, "/"))
	}
	re := regexp.MustCompile(`(^|[=, ]|unix://)(` + strings.Join(quoted, "|") + `)([/, ]|$)`)
	return func(s string) string {
		return re.ReplaceAllString(s, "${1}"+strings.ReplaceAll(root, "$", "$$")+"${2}${3}")
	}
}

// createPod records the Job's pod in the apiserver, Running, so the agent can read its
// container's termination message later as it does on a real cluster.
func (n *Node) createPod(ctx context.Context, j *batchv1.Job) *corev1.Pod {
	labels := map[string]string{}
	for k, v := range j.Spec.Template.Labels {
		labels[k] = v
	}
	labels[batchv1.JobNameLabel] = j.Name
	labels["job-name"] = j.Name
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: j.Name + "-", Namespace: j.Namespace, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "batch/v1", Kind: "Job", Name: j.Name, UID: j.UID, Controller: ptr.To(true),
			}},
		},
		Spec: *j.Spec.Template.Spec.DeepCopy(),
	}
	p, err := n.c.CoreV1().Pods(j.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		if ctx.Err() == nil {
			n.t.Errorf("node: creating the pod of job %s: %v", j.Name, err)
		}
		return nil
	}
	now := metav1.Now()
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &now}
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	if p, err = n.c.CoreV1().Pods(j.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		if ctx.Err() == nil {
			n.t.Errorf("node: pod status of job %s: %v", j.Name, err)
		}
		return nil
	}
	return p
}

// terminationMessage reads what the Job's container wrote to its terminationMessagePath,
// cut at the kubelet's limit of 4096 bytes.
func (n *Node) terminationMessage(j *batchv1.Job, root string) string {
	path := j.Spec.Template.Spec.Containers[0].TerminationMessagePath
	if path == "" {
		path = corev1.TerminationMessagePathDefault
	}
	data, err := os.ReadFile(root + path)
	if err != nil {
		return ""
	}
	if len(data) > terminationFileBytes {
		data = data[:terminationFileBytes]
	}
	return string(data)
}

// terminationFileBytes is the kubelet's limit of one container's termination message file.
const terminationFileBytes = 4096

// Limits of the kubelet's FallbackToLogsOnError termination message.
const (
	terminationLogLines = 80
	terminationLogBytes = 2048
)

func (n *Node) finishPod(ctx context.Context, p *corev1.Pod, j *batchv1.Job, run NodeRun) {
	if p == nil {
		return
	}
	c := j.Spec.Template.Spec.Containers[0]
	term := &corev1.ContainerStateTerminated{ExitCode: int32(run.ExitCode), Reason: "Completed", FinishedAt: metav1.Now(), Message: run.Message}
	p.Status.Phase = corev1.PodSucceeded
	if run.ExitCode != 0 {
		p.Status.Phase, term.Reason = corev1.PodFailed, "Error"
		if run.ExitCode < 0 {
			term.ExitCode, term.Reason = 128, "ContainerCannotRun"
			term.Message = run.Output
		} else if term.Message == "" && c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
			term.Message = logTail(run.Output, terminationLogLines, terminationLogBytes)
		}
	}
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == c.Name {
			p.Status.ContainerStatuses[i].Ready = false
			p.Status.ContainerStatuses[i].Started = ptr.To(false)
			p.Status.ContainerStatuses[i].State = corev1.ContainerState{Terminated: term}
		}
	}
	if _, err := n.c.CoreV1().Pods(j.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
		n.t.Errorf("node: pod status of job %s: %v", j.Name, err)
	}
}

// finishJob sets the Job's status as the Job controller does: Complete when reason is
// empty, else Failed with reason and message.
func (n *Node) finishJob(ctx context.Context, j *batchv1.Job, start time.Time, reason, message string) {
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	started := metav1.NewTime(start.Truncate(time.Second))
	if reason == "" {
		j.Status = batchv1.JobStatus{StartTime: &started, CompletionTime: &now, Succeeded: 1, Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: now},
		}}
	} else {
		j.Status = batchv1.JobStatus{StartTime: &started, Failed: 1, Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastTransitionTime: now},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastTransitionTime: now},
		}}
	}
	if _, err := n.c.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
		n.t.Errorf("node: job status %s: %v", j.Name, err)
	}
}

// logTail is the last lines of s, at most maxBytes of them.
func logTail(s string, lines, maxBytes int) string {
	s = lastLines(strings.TrimRight(s, "\n"), lines)
	if len(s) > maxBytes {
		s = s[len(s)-maxBytes:]
	}
	return s
}
