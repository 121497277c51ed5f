package builders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/promoter-dev/promoter/internal/types"
)

// Kubernetes builds each attempt in a Job rendered from a JobTemplate, in one namespace,
// and watches it to completion. It needs only the namespaced permissions of Role.
type Kubernetes struct {
	client    kubernetes.Interface
	namespace string
	tmpl      *JobTemplate
	log       *slog.Logger
}

// NewKubernetes renders Jobs for b (its namespace, image, template, secret, deadline and
// TTL) and creates them with client.
func NewKubernetes(client kubernetes.Interface, b JobSettings, opts ...Option) (*Kubernetes, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if b.Namespace == "" {
		return nil, errors.New("kubernetes executor: builder.namespace must be set")
	}
	tmpl, err := NewJobTemplate(b)
	if err != nil {
		return nil, err
	}
	return &Kubernetes{client: client, namespace: b.Namespace, tmpl: tmpl, log: o.log}, nil
}

// Build creates the Job of this attempt (or adopts it, when an earlier delivery of the
// same attempt created it) and waits until it is Complete (nil, with the digest the Job
// reported: see digest.go) or Failed (a *JobFailedError). When ctx ends first, the Job is deleted with its pods, so an agent
// that stops does not leave a build pushing behind the next attempt's back.
func (k *Kubernetes) Build(ctx context.Context, req types.BuildRequest, attempt int) (Built, error) {
	job, err := k.tmpl.Render(req, attempt)
	if err != nil {
		return Built{}, err
	}
	built := Built{Job: job.Name}
	jobs := k.client.BatchV1().Jobs(k.namespace)
	created, err := jobs.Create(ctx, job, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		created, err = jobs.Get(ctx, job.Name, metav1.GetOptions{})
		if err != nil {
			return built, fmt.Errorf("reading existing job %s/%s: %w", k.namespace, job.Name, err)
		}
		k.log.Info("adopting existing build job", "job", job.Name)
	case err != nil:
		return built, fmt.Errorf("creating job %s/%s: %w", k.namespace, job.Name, kubeHint(err))
	default:
		k.log.Info("created build job", "job", job.Name, "pipeline", req.Pipeline, "revision", req.Revision,
			"platform", req.Platform.String(), "attempt", attempt)
	}
	err = k.wait(ctx, req, created)
	if ctx.Err() != nil {
		k.delete(job.Name)
		return built, fmt.Errorf("build job %s/%s abandoned: %w", k.namespace, job.Name, ctx.Err())
	}
	if err != nil {
		return built, err
	}
	built.Digest, err = k.pushedDigest(ctx, job.Name)
	return built, err
}

// wait follows the Job until it finishes, re-establishing the watch when the apiserver
// closes it (it does so every few minutes, and with 410 Gone when the version is too old).
func (k *Kubernetes) wait(ctx context.Context, req types.BuildRequest, job *batchv1.Job) error {
	jobs := k.client.BatchV1().Jobs(k.namespace)
	name := job.Name
	for {
		if done, err := k.outcome(ctx, req, job); done {
			return err
		}
		w, err := jobs.Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
			ResourceVersion: job.ResourceVersion,
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("watching job %s/%s: %w", k.namespace, name, kubeHint(err))
		}
		finished, err := k.follow(ctx, w, name)
		w.Stop()
		if err != nil {
			return err
		}
		if finished != nil {
			job = finished
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		job, err = jobs.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("build job %s/%s was deleted before it finished", k.namespace, name)
		}
		if err != nil {
			return fmt.Errorf("reading job %s/%s: %w", k.namespace, name, kubeHint(err))
		}
	}
}

// follow reads watch events until the Job finishes (returning it) or the watch ends
// (returning nil, nil).
func (k *Kubernetes) follow(ctx context.Context, w watch.Interface, name string) (*batchv1.Job, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type == watch.Error {
				return nil, nil
			}
			if ev.Type == watch.Deleted {
				return nil, fmt.Errorf("build job %s/%s was deleted before it finished", k.namespace, name)
			}
			if j, ok := ev.Object.(*batchv1.Job); ok && jobFinished(j) {
				return j, nil
			}
		}
	}
}

// jobFinished reports whether the Job has a true Complete or Failed condition.
func jobFinished(j *batchv1.Job) bool {
	return condition(j, batchv1.JobComplete) != nil || condition(j, batchv1.JobFailed) != nil
}

func condition(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

// outcome says whether the Job finished and, if it failed, why.
func (k *Kubernetes) outcome(ctx context.Context, req types.BuildRequest, j *batchv1.Job) (done bool, err error) {
	if condition(j, batchv1.JobComplete) != nil {
		return true, nil
	}
	c := condition(j, batchv1.JobFailed)
	if c == nil {
		return false, nil
	}
	msg := k.podMessage(ctx, j.Name)
	if msg != "" {
		// The whole tail goes to the log; the revision's reason gets the part that matters.
		k.log.Info("build job failed", "job", j.Name, "output", msg)
	}
	return true, &JobFailedError{
		Namespace: k.namespace, Job: j.Name, Reason: c.Reason, Message: c.Message,
		PodMessage: msg, Cause: failureCause(req, k.namespace, msg),
	}
}

// podMessage finds why the build container of the Job's pod stopped: its termination
// message, else the tail of its log. It is best effort: an empty string when the pod is
// gone or unreadable.
func (k *Kubernetes) podMessage(ctx context.Context, job string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pods, err := k.client.CoreV1().Pods(k.namespace).List(ctx, metav1.ListOptions{
		LabelSelector: batchv1.JobNameLabel + "=" + job,
	})
	if err != nil {
		k.log.Debug("listing pods of failed job", "job", job, "error", err)
		return ""
	}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
				msg := strings.TrimSpace(t.Message)
				if msg == "" {
					msg = strings.TrimSpace(k.logTail(ctx, p.Name, cs.Name))
				}
				if msg == "" {
					msg = fmt.Sprintf("container %s exited with %d (%s)", cs.Name, t.ExitCode, t.Reason)
				}
				return truncate(msg, 2048)
			}
		}
	}
	return ""
}

func (k *Kubernetes) logTail(ctx context.Context, pod, container string) string {
	data, err := k.client.CoreV1().Pods(k.namespace).GetLogs(pod, &corev1.PodLogOptions{
		Container: container, TailLines: ptr.To[int64](20),
	}).DoRaw(ctx)
	if err != nil {
		return ""
	}
	return string(data)
}

// delete removes an abandoned Job and its pods. It runs after the caller's context ended,
// so it has its own short one.
func (k *Kubernetes) delete(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := k.client.BatchV1().Jobs(k.namespace).Delete(ctx, name, metav1.DeleteOptions{
		PropagationPolicy: ptr.To(metav1.DeletePropagationBackground),
	})
	if err != nil && !apierrors.IsNotFound(err) {
		k.log.Warn("deleting abandoned build job", "job", name, "error", err)
		return
	}
	k.log.Info("deleted abandoned build job", "job", name)
}

// kubeHint adds what to do to the errors an operator can fix.
func kubeHint(err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w (bind the agent's service account to the Role from builders.Role: create/get/watch/delete jobs, get/list pods, get pods/log)", err)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w (does the builder namespace exist?)", err)
	}
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
