package builders_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

const buildNS = "promoter-builds"

// startBuilderKube starts a kube-apiserver with the builder namespace (Pod Security
// "privileged", see doc.go) and returns the admin client and a client of the "builder"
// user holding nothing but the Role from builders.Role(), as the agent's service account would.
func startBuilderKube(t *testing.T) (admin, builder kubernetes.Interface) {
	t.Helper()
	k := testenv.StartKube(t)
	ctx := context.Background()
	admin = k.Client
	_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: buildNS, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "privileged"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	role := builders.Role(buildNS)
	if _, err := admin.RbacV1().Roles(buildNS).Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = admin.RbacV1().RoleBindings(buildNS).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: builders.RoleName, Namespace: buildNS},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: builders.RoleName},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "builder"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	builder, err = kubernetes.NewForConfig(k.UserConfig(t, "builder"))
	if err != nil {
		t.Fatal(err)
	}
	// The authorizer learns of new bindings through an informer: wait until it did.
	err = testenv.WaitFor(10*time.Second, func() error {
		r, err := builder.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: buildNS, Verb: "create", Group: "batch", Resource: "jobs",
			}},
		}, metav1.CreateOptions{})
		if err == nil && !r.Status.Allowed {
			err = fmt.Errorf("denied: %+v", r.Status)
		}
		return err
	})
	if err != nil {
		t.Fatalf("builder user still may not create jobs: %v", err)
	}
	return admin, builder
}

func TestKubernetesAgent(t *testing.T) {
	admin, builderClient := startBuilderKube(t)
	b := openBus(t)
	exec, err := builders.NewKubernetes(builderClient, testBuilder())
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.Discard()
	agent, err := builders.NewAgent(b, exec, []types.Platform{types.MustPlatform("linux/arm64")},
		builders.WithMaxAttempts(2), builders.WithRetryDelay(100*time.Millisecond), builders.WithAckWait(3*time.Second), builders.WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	k := &kubeAgent{admin: admin, b: b, m: m, res: results(t, b), done: make(chan error, 1)}
	ctx, stop := context.WithCancel(context.Background())
	k.stop = stop
	go func() { k.done <- agent.Run(ctx) }()
	t.Cleanup(func() { k.stop(); <-k.done })

	t.Run("complete job succeeds", k.completeJobSucceeds)
	t.Run("failed job is retried then given up", k.failedJobIsRetriedThenGivenUp)
	t.Run("complete job that reports no digest fails for good", k.jobWithoutDigestFails)
	t.Run("stopping the agent deletes the running job", k.stoppingDeletesTheRunningJob)
}

// kubeAgent is a running Kubernetes agent of linux/arm64 (TestKubernetesAgent) and what its
// subtests drive and watch it with: the apiserver as admin, the bus, the results.
type kubeAgent struct {
	admin kubernetes.Interface
	b     *bus.Bus
	m     *metrics.Metrics
	res   <-chan types.BuildResult
	stop  context.CancelFunc
	done  chan error // the agent's Run
}

// dispatch queues the linux/arm64 build of rev.
func (k *kubeAgent) dispatch(t *testing.T, rev string) types.BuildRequest {
	t.Helper()
	req := testRequest("linux/arm64")
	req.Revision = rev
	req.Image = "staging.example:5000/acme/web:" + rev + "-arm64"
	if _, err := k.b.Publish(context.Background(), types.BuildSubject(req.Platform), req.MsgID(), req); err != nil {
		t.Fatal(err)
	}
	return req
}

func (k *kubeAgent) completeJobSucceeds(t *testing.T) {
	req := k.dispatch(t, "1111111111111111111111111111111111111111")
	job := waitJob(t, k.admin, req, 1)
	checkBuildJob(t, job, req)
	// buildctl's metadata file, as the kubelet hands it back as termination message.
	const digest = "sha256:6f1bde0e4ec4ce9cf3fd3a4b5b1d4a3d1a0bbda0f6a1ad0b8ad0a25e2c56f5f9"
	createPod(t, k.admin, job, 0, `{"containerimage.config.digest":"sha256:0d4b36e3e2d4ac2b32e01e5eb8a2a2ba0e3c4a9f2c1ea0b0bd6d8b69b0c5d8a1","containerimage.digest":"`+digest+`","image.name":"staging.example:5000/acme/web:1111-arm64"}`)
	completeJob(t, k.admin, job)
	r := nextResult(t, k.res, 20*time.Second)
	if r.Outcome != types.BuildSucceeded || !r.Final || r.Attempt != 1 || r.Job != job.Name || r.Request.MsgID() != req.MsgID() || r.Digest != digest {
		t.Errorf("result: %+v, want succeeded, final, attempt 1 of job %s, digest %s", r, job.Name, digest)
	}
}

// checkBuildJob checks the Job of the first attempt of req (an arm64 build) as the
// apiserver stored it, created by the restricted builder user.
func checkBuildJob(t *testing.T, job *batchv1.Job, req types.BuildRequest) {
	t.Helper()
	if job.Name != builders.JobName(req, 1) {
		t.Errorf("job name: got %s, want %s", job.Name, builders.JobName(req, 1))
	}
	spec := job.Spec.Template.Spec
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		if sc := c.SecurityContext; sc != nil && sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s is privileged", c.Name)
		}
	}
	if got := spec.NodeSelector["kubernetes.io/arch"]; got != "arm64" {
		t.Errorf("nodeSelector kubernetes.io/arch: got %q, want arm64", got)
	}
	if !hasToleration(spec.Tolerations, "kubernetes.io/arch", "arm64") {
		t.Errorf("no arm64 arch toleration in %+v", spec.Tolerations)
	}
	if d := job.Spec.ActiveDeadlineSeconds; d == nil || *d != 3600 {
		t.Errorf("activeDeadlineSeconds: got %v, want 3600", d)
	}
	if bl := job.Spec.BackoffLimit; bl == nil || *bl != 0 {
		t.Errorf("backoffLimit: got %v, want 0", bl)
	}
	if got := strings.Join(spec.Containers[0].Command, " "); !strings.Contains(got, "--metadata-file") || !strings.Contains(got, "> /dev/termination-log") {
		t.Errorf("the build container does not report its digest (buildctl's metadata copied to /dev/termination-log): %q", got)
	}
}

func (k *kubeAgent) failedJobIsRetriedThenGivenUp(t *testing.T) {
	req := k.dispatch(t, "2222222222222222222222222222222222222222")
	job1 := waitJob(t, k.admin, req, 1)
	failJob(t, k.admin, job1, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
	r := nextResult(t, k.res, 20*time.Second)
	if r.Outcome != types.BuildFailed || r.Final || r.Attempt != 1 || !strings.Contains(r.Reason, "BackoffLimitExceeded") {
		t.Errorf("first result: %+v, want a non-final failure of attempt 1", r)
	}
	// A second attempt is a new Job. Its pod (created here, as the Job controller
	// would) exits with the build's error as termination message.
	job2 := waitJob(t, k.admin, req, 2)
	if job2.Name == job1.Name {
		t.Fatalf("attempt 2 reused job %s", job1.Name)
	}
	createPod(t, k.admin, job2, 1, "ERROR: failed to solve: process \"/bin/sh -c make\" did not complete successfully: exit code: 2")
	failJob(t, k.admin, job2, "DeadlineExceeded", "Job was active longer than specified deadline")
	r = nextResult(t, k.res, 20*time.Second)
	if r.Outcome != types.BuildFailed || !r.Final || r.Attempt != 2 || r.Job != job2.Name {
		t.Errorf("second result: %+v, want the final failure of attempt 2 (job %s)", r, job2.Name)
	}
	for _, want := range []string{"gave up after 2 attempts", "DeadlineExceeded", "did not complete successfully: exit code: 2"} {
		if !strings.Contains(r.Reason, want) {
			t.Errorf("final reason %q lacks %q", r.Reason, want)
		}
	}
	if n := testutil.ToFloat64(k.m.Builds.WithLabelValues("linux/arm64", "gave_up")); n != 1 {
		t.Errorf("builds{linux/arm64,gave_up}: got %v, want 1", n)
	}
	waitQueueEmpty(t, k.b)
}

func (k *kubeAgent) jobWithoutDigestFails(t *testing.T) {
	req := k.dispatch(t, "4444444444444444444444444444444444444444")
	job := waitJob(t, k.admin, req, 1)
	createPod(t, k.admin, job, 0, "")
	completeJob(t, k.admin, job)
	r := nextResult(t, k.res, 30*time.Second)
	if r.Outcome != types.BuildFailed || !r.Final || r.Digest != "" || !strings.Contains(r.Reason, "reported no image digest") {
		t.Errorf("result: %+v, want a final failure saying the job reported no image digest", r)
	}
}

func (k *kubeAgent) stoppingDeletesTheRunningJob(t *testing.T) {
	req := k.dispatch(t, "3333333333333333333333333333333333333333")
	job := waitJob(t, k.admin, req, 1)
	k.stop()
	if err := <-k.done; err != nil {
		t.Errorf("agent Run: %v", err)
	}
	k.done <- nil // for the cleanup
	_, err := k.admin.BatchV1().Jobs(buildNS).Get(context.Background(), job.Name, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("job %s after the agent stopped: got %v, want NotFound", job.Name, err)
	}
}

// TestPodSecurityBaselineRejectsTheBuildPod backs doc.go's claim: the build pod is not
// privileged, yet only the "privileged" Pod Security level admits it.
func TestPodSecurityBaselineRejectsTheBuildPod(t *testing.T) {
	k := testenv.StartKube(t)
	ctx := context.Background()
	tmpl, err := builders.NewJobTemplate(testBuilder())
	if err != nil {
		t.Fatal(err)
	}
	job, err := tmpl.Render(testRequest("linux/amd64"), 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		level   string
		wantErr []string
	}{
		{level: "baseline", wantErr: []string{`violates PodSecurity "baseline`, "seccompProfile", "AppArmor profile"}},
		{level: "privileged"},
	} {
		t.Run(tc.level, func(t *testing.T) {
			ns := "builds-" + tc.level
			_, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				Name: ns, Labels: map[string]string{"pod-security.kubernetes.io/enforce": tc.level},
			}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "build", Namespace: ns}, Spec: job.Spec.Template.Spec}
			_, err = k.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("creating the build pod in a %s namespace: %v", tc.level, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("the build pod was admitted in a %s namespace", tc.level)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func hasToleration(ts []corev1.Toleration, key, value string) bool {
	for _, t := range ts {
		if t.Key == key && t.Value == value && t.Effect == corev1.TaintEffectNoSchedule {
			return true
		}
	}
	return false
}

// waitJob waits for the Job of one attempt of req, found by its labels.
func waitJob(t *testing.T, c kubernetes.Interface, req types.BuildRequest, attempt int) *batchv1.Job {
	t.Helper()
	sel := labels.SelectorFromSet(labels.Set{
		builders.LabelRevision: builders.JobLabels(req, attempt)[builders.LabelRevision],
		builders.LabelAttempt:  builders.JobLabels(req, attempt)[builders.LabelAttempt],
	}).String()
	var job *batchv1.Job
	var listErr error
	err := testenv.WaitFor(20*time.Second, func() error {
		jobs, err := c.BatchV1().Jobs(buildNS).List(context.Background(), metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			listErr = err // not something to wait out
			return nil
		}
		if len(jobs.Items) != 1 {
			return fmt.Errorf("%d jobs", len(jobs.Items))
		}
		job = &jobs.Items[0]
		return nil
	})
	if listErr != nil {
		t.Fatal(listErr)
	}
	if err != nil {
		t.Fatalf("no job %s within 20s: %v", sel, err)
	}
	return job
}

// completeJob sets the status the Job controller sets on success. Since Kubernetes 1.31 the
// apiserver validates the transition: Complete needs SuccessCriteriaMet first, a start
// time and a completion time not before it.
func completeJob(t *testing.T, c kubernetes.Interface, job *batchv1.Job) {
	t.Helper()
	start, end := metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second)), metav1.NewTime(time.Now().Truncate(time.Second))
	job.Status = batchv1.JobStatus{
		StartTime: &start, CompletionTime: &end, Succeeded: 1,
		Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: end},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: end},
		},
	}
	if _, err := c.BatchV1().Jobs(buildNS).UpdateStatus(context.Background(), job, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("completing job %s: %v", job.Name, err)
	}
}

// failJob sets the status the Job controller sets on failure: Failed needs FailureTarget
// first and a start time, and no completion time.
func failJob(t *testing.T, c kubernetes.Interface, job *batchv1.Job, reason, message string) {
	t.Helper()
	start, end := metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second)), metav1.NewTime(time.Now().Truncate(time.Second))
	job.Status = batchv1.JobStatus{
		StartTime: &start, Failed: 1,
		Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastTransitionTime: end},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastTransitionTime: end},
		},
	}
	if _, err := c.BatchV1().Jobs(buildNS).UpdateStatus(context.Background(), job, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("failing job %s: %v", job.Name, err)
	}
}

// createPod creates the Job's pod as the Job controller would and marks its build
// container terminated with exit code and termination message, as the kubelet would.
func createPod(t *testing.T, c kubernetes.Interface, job *batchv1.Job, exit int32, message string) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: job.Name + "-x7k2p", Namespace: buildNS,
			Labels: map[string]string{batchv1.JobNameLabel: job.Name},
		},
		Spec: job.Spec.Template.Spec,
	}
	pod, err := c.CoreV1().Pods(buildNS).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating the pod of %s: %v", job.Name, err)
	}
	now := metav1.Now()
	term := &corev1.ContainerStateTerminated{ExitCode: exit, Reason: "Completed", Message: message, StartedAt: now, FinishedAt: now}
	pod.Status.Phase = corev1.PodSucceeded
	if exit != 0 {
		pod.Status.Phase, term.Reason = corev1.PodFailed, "Error"
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "buildkit", Image: pod.Spec.Containers[0].Image,
		State: corev1.ContainerState{Terminated: term},
	}}
	if _, err := c.CoreV1().Pods(buildNS).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("setting the status of pod %s: %v", pod.Name, err)
	}
}
