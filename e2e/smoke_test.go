package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/notifications"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestSmoke proves each component of the test environment is the real thing.
func TestSmoke(t *testing.T) {
	t.Run("registry sends push notifications", smokeRegistry)
	t.Run("jetstream de-duplicates by message id", smokeNATS)
	t.Run("kube-apiserver enforces pod security", smokeKube)
}

func smokeRegistry(t *testing.T) {
	var mu sync.Mutex
	var events []notifications.Event
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// notifications.Envelope holds go-events interfaces; decode into the concrete type.
		var env struct{ Events []notifications.Event }
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &env); err != nil {
			t.Errorf("notification body: %v", err)
		}
		mu.Lock()
		events = append(events, env.Events...)
		mu.Unlock()
	}))
	t.Cleanup(sink.Close)
	reg := testenv.StartRegistry(t, localregistry.WithNotify(sink.URL, http.Header{"Authorization": {"Bearer smoke"}}))

	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg.Host + "/smoke/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push: %v", err)
	}
	digest, _ := img.Digest()
	eventually(t, 10*time.Second, "a push notification for smoke/app:v1", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range events {
			if e.Action == "push" && e.Target.Repository == "smoke/app" && e.Target.Tag == "v1" && e.Target.Digest.String() == digest.String() {
				return true
			}
		}
		return false
	})
}

func smokeNATS(t *testing.T) {
	n := testenv.StartNATS(t)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SMOKE", Subjects: []string{"smoke.>"}, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	first, err := js.Publish(ctx, "smoke.a", []byte("1"), jetstream.WithMsgID("same"))
	if err != nil || first.Duplicate {
		t.Fatalf("first publish: %+v %v", first, err)
	}
	second, err := js.Publish(ctx, "smoke.a", []byte("1"), jetstream.WithMsgID("same"))
	if err != nil || !second.Duplicate {
		t.Fatalf("second publish: got %+v %v, want Duplicate", second, err)
	}
	c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "smoke", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.FetchNoWait(10)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for m := range batch.Messages() {
		got++
		_ = m.Ack()
	}
	if got != 1 {
		t.Errorf("consumer received %d messages, want 1", got)
	}
}

func smokeKube(t *testing.T) {
	k := testenv.StartKube(t)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   "smoke",
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "baseline"},
	}}
	if _, err := k.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(name string, privileged bool) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "c", Image: "busybox",
				SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(privileged)},
			}}},
		}
	}
	_, err := k.Client.CoreV1().Pods("smoke").Create(ctx, pod("privileged", true), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "privileged") {
		t.Fatalf("privileged pod: got %v, want Forbidden naming privileged", err)
	}
	if _, err := k.Client.CoreV1().Pods("smoke").Create(ctx, pod("plain", false), metav1.CreateOptions{}); err != nil {
		t.Fatalf("unprivileged pod: %v", err)
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "c", Image: "busybox"}},
		}}},
	}
	if _, err := k.Client.BatchV1().Jobs("smoke").Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatalf("job: %v", err)
	}
	got, err := k.Client.BatchV1().Jobs("smoke").Get(ctx, "smoke", metav1.GetOptions{})
	if err != nil || got.Spec.Template.Spec.Containers[0].Image != "busybox" {
		t.Fatalf("reading the job back: %v", err)
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	err := testenv.WaitFor(timeout, func() error {
		if !cond() {
			return errors.New(what)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}
