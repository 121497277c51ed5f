package builders

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promoter-dev/promoter/internal/backoff"
	"github.com/promoter-dev/promoter/internal/bus"
)

// The digest contract of a build Job, which a custom builder.jobTemplate must keep too: on
// success, a container of the Job's pod leaves the digest of the manifest it pushed in its
// termination message (the file at terminationMessagePath, /dev/termination-log by
// default), either as
//   - buildctl's --metadata-file, a JSON object whose "containerimage.digest" is the digest
//     (what the default template leaves there: buildctl writes it to TMPDIR, since it
//     replaces the file by a rename /dev refuses, and the file is copied after success), or
//   - the bare digest, "sha256:<hex>" (kaniko's `--digest-file /dev/termination-log`).
//
// The agent reports that digest in the BuildResult, and the merge takes no other image
// under the arch tag: it is what tells promoter's build from an image pushed over it.
const metadataDigestKey = "containerimage.digest"

var (
	digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	// metadataDigestRE finds the digest in a metadata file the kubelet cut at its 4 KiB
	// termination-message limit, which is no longer valid JSON.
	metadataDigestRE = regexp.MustCompile(`"containerimage\.digest"\s*:\s*"(sha256:[0-9a-f]{64})"`)
)

// ReportedDigest finds the pushed digest in a termination message kept to the contract
// above; ok is false when it holds none.
func ReportedDigest(msg string) (digest string, ok bool) {
	msg = strings.TrimSpace(msg)
	if digestRE.MatchString(msg) {
		return msg, true
	}
	var meta map[string]any
	if json.Unmarshal([]byte(msg), &meta) == nil {
		if d, _ := meta[metadataDigestKey].(string); digestRE.MatchString(d) {
			return d, true
		}
		return "", false
	}
	if m := metadataDigestRE.FindStringSubmatch(msg); m != nil {
		return m[1], true
	}
	return "", false
}

// pushedDigest reads the digest a completed Job reported (see ReportedDigest) from its
// pod's containers. Reading the pods is retried for a while: the image is pushed, and a
// rebuild because the apiserver hiccuped would waste a build. A Job that completed without
// reporting a digest broke the contract, which no retry mends: that is bus.ErrPermanent.
func (k *Kubernetes) pushedDigest(ctx context.Context, job string) (string, error) {
	policy := backoff.Policy{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	var err error
	for try := 0; try < 8; try++ {
		var d string
		if d, err = k.readDigest(ctx, job); err == nil {
			return d, nil
		}
		if backoff.Sleep(ctx, policy.Delay(try)) != nil {
			break
		}
	}
	return "", fmt.Errorf("reading the digest build job %s/%s pushed: %w", k.namespace, job, err)
}

func (k *Kubernetes) readDigest(ctx context.Context, job string) (string, error) {
	pods, err := k.client.CoreV1().Pods(k.namespace).List(ctx, metav1.ListOptions{
		LabelSelector: batchv1.JobNameLabel + "=" + job,
	})
	if err != nil {
		return "", kubeHint(err)
	}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil && t.ExitCode == 0 {
				if d, ok := ReportedDigest(t.Message); ok {
					return d, nil
				}
			}
		}
	}
	if len(pods.Items) == 0 {
		return "", fmt.Errorf("build job %s/%s completed, but its pod is gone", k.namespace, job)
	}
	return "", fmt.Errorf("%w: build job %s/%s completed but reported no image digest: its build container must leave the digest it pushed in its termination message (buildctl --metadata-file FILE, then FILE copied to /dev/termination-log; or kaniko --digest-file /dev/termination-log); promoter merges only an image its build reported", bus.ErrPermanent, k.namespace, job)
}
