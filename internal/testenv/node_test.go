package testenv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

func TestPathMapper(t *testing.T) {
	m := pathMapper("/r/1", []string{"/home/user", "/run/user/1000", "/home/user/.docker", "/run/secrets/"})
	tests := []struct {
		name, in, want string
	}{
		{"a mount path", "/home/user/.docker", "/r/1/home/user/.docker"},
		{"under a root", "/home/user/.local/share/buildkit", "/r/1/home/user/.local/share/buildkit"},
		{"after =", "src=/run/secrets/token", "src=/r/1/run/secrets/token"},
		{"in a list", "id=a,src=/run/secrets/a,dst=/run/secrets/b", "id=a,src=/r/1/run/secrets/a,dst=/r/1/run/secrets/b"},
		{"after a space", "--config /home/user/x.toml", "--config /r/1/home/user/x.toml"},
		{"a socket", "unix:///run/user/1000/buildkit/buildkitd.sock", "unix:///r/1/run/user/1000/buildkit/buildkitd.sock"},
		{"a flag", "--oci-worker-no-process-sandbox", "--oci-worker-no-process-sandbox"},
		{"a longer name", "/home/username", "/home/username"},
		{"inside another path", "/opt/home/user", "/opt/home/user"},
		{"a URL", "git://127.0.0.1:1/home/user.git#abc", "git://127.0.0.1:1/home/user.git#abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// nodeUnderTest is a Node on a real apiserver, in namespace "builds", whose "BuildKit" is
// only a build user and a HOME: enough for the volume and Secret emulation and for
// containers that run a shell, not for a build. When the tests run as root the build user
// is nobody (65534), so ownership is checked as it is on a real node.
func nodeUnderTest(t *testing.T) (*Node, *Kube) {
	t.Helper()
	kube := StartKube(t)
	ctx := context.Background()
	if _, err := kube.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "builds"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the namespace: %v", err)
	}
	home := t.TempDir()
	// The build user must reach its HOME through the test's temporary directories.
	for _, d := range []string{home, filepath.Dir(home)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bk := &BuildKit{Dir: filepath.Join(home, "bin"), Home: home, User: "nobody"}
	if os.Geteuid() == 0 {
		bk.cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	return &Node{t: t, bk: bk, c: kube.Client, ns: "builds"}, kube
}

// createSecret stores a Secret named name with data in the node's namespace.
func createSecret(t *testing.T, c kubernetes.Interface, name string, data map[string]string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "builds"}, StringData: data}
	if _, err := c.CoreV1().Secrets("builds").Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating secret %s: %v", name, err)
	}
}

// buildJob is a Job whose pod runs script with sh as a non-root user, with volumes
// mounted, changed by each of change.
func buildJob(name, script string, change ...func(*corev1.PodSpec)) *batchv1.Job {
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "builds"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy:   corev1.RestartPolicyNever,
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000)},
			Containers: []corev1.Container{{
				Name: "build", Image: "moby/buildkit:rootless",
				Command: []string{"/bin/sh", "-c", script},
			}},
		}}},
	}
	for _, c := range change {
		c(&j.Spec.Template.Spec)
	}
	return j
}

// withSecretVolume mounts Secret volume src as name at mountPath.
func withSecretVolume(name, mountPath string, src corev1.SecretVolumeSource) func(*corev1.PodSpec) {
	return func(ps *corev1.PodSpec) {
		ps.Volumes = append(ps.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &src}})
		ps.Containers[0].VolumeMounts = append(ps.Containers[0].VolumeMounts, corev1.VolumeMount{Name: name, MountPath: mountPath})
	}
}

// withEmptyDir mounts an emptyDir volume as name at mountPath.
func withEmptyDir(name, mountPath string) func(*corev1.PodSpec) {
	return func(ps *corev1.PodSpec) {
		ps.Volumes = append(ps.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		ps.Containers[0].VolumeMounts = append(ps.Containers[0].VolumeMounts, corev1.VolumeMount{Name: name, MountPath: mountPath})
	}
}

// hostFile is what the node wrote at one host path.
type hostFile struct {
	Data     string // "" for a directory
	Mode     os.FileMode
	UID, GID int
}

// umask is the process's umask, which the node's plain MkdirAll and WriteFile calls obey.
func umask(t *testing.T) os.FileMode {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				t.Fatal(err)
			}
			return os.FileMode(m)
		}
	}
	t.Fatal("no Umask in /proc/self/status")
	return 0
}

// statFile is the contents, permission bits and owner of host path p.
func statFile(t *testing.T, p string) hostFile {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	f := hostFile{Mode: fi.Mode() & (os.ModePerm | os.ModeDir), UID: int(st.Uid), GID: int(st.Gid)}
	if !fi.IsDir() {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f.Data = string(b)
	}
	return f
}

// TestNodeMaterialisesVolumes checks what prepare leaves under a Job's root, as the
// kubelet would: Secret keys or items as files with their modes, owned by root (the
// fsGroup's group when the pod sets one), emptyDirs and image directories of the build
// user's, and the termination message file in a directory that stays root's.
func TestNodeMaterialisesVolumes(t *testing.T) {
	n, kube := nodeUnderTest(t)
	createSecret(t, kube.Client, "registry", map[string]string{"config.json": `{"auths":{}}`, "extra": "x"})
	createSecret(t, kube.Client, "git", map[string]string{"token": "t0k", "known_hosts": "host key"})
	uid, gid := os.Getuid(), os.Getgid()
	if n.bk.cred != nil {
		uid, gid = int(n.bk.cred.Uid), int(n.bk.cred.Gid)
	}
	mask := umask(t)
	root := func(t *testing.T) string { return filepath.Join(t.TempDir(), "j") }

	tests := []struct {
		name    string
		job     *batchv1.Job
		want    map[string]hostFile // container path: file
		absent  []string            // container paths that must not exist
		wantErr string              // part of the refusal, which says what the node does not do
	}{
		{
			name: "every key of a Secret, default mode 0644, owned by root",
			job:  buildJob("keys", "true", withSecretVolume("docker", "/home/user/.docker", corev1.SecretVolumeSource{SecretName: "registry"})),
			want: map[string]hostFile{
				"/home/user/.docker/config.json": {Data: `{"auths":{}}`, Mode: 0o644, UID: os.Getuid(), GID: os.Getgid()},
				"/home/user/.docker/extra":       {Data: "x", Mode: 0o644, UID: os.Getuid(), GID: os.Getgid()},
			},
		},
		{
			name: "items: chosen keys at their paths, defaultMode and an item's own mode",
			job: buildJob("items", "true", withSecretVolume("git", "/run/secrets/git", corev1.SecretVolumeSource{
				SecretName: "git", DefaultMode: ptr.To[int32](0o400),
				Items: []corev1.KeyToPath{{Key: "token", Path: "auth/token"}, {Key: "known_hosts", Path: "known_hosts", Mode: ptr.To[int32](0o444)}},
			})),
			want: map[string]hostFile{
				"/run/secrets/git/auth/token":  {Data: "t0k", Mode: 0o400, UID: os.Getuid(), GID: os.Getgid()},
				"/run/secrets/git/known_hosts": {Data: "host key", Mode: 0o444, UID: os.Getuid(), GID: os.Getgid()},
			},
		},
		{
			name: "an fsGroup gets the Secret's files",
			job: buildJob("fsgroup", "true", withSecretVolume("docker", "/home/user/.docker", corev1.SecretVolumeSource{SecretName: "registry", Items: []corev1.KeyToPath{{Key: "extra", Path: "extra"}}}),
				func(ps *corev1.PodSpec) { ps.SecurityContext.FSGroup = ptr.To[int64](1000) }),
			want:   map[string]hostFile{"/home/user/.docker/extra": {Data: "x", Mode: 0o644, UID: 0, GID: gid}},
			absent: []string{"/home/user/.docker/config.json"},
		},
		{
			name: "an optional Secret that is missing, and an optional key that is",
			job: buildJob("optional", "true",
				withSecretVolume("none", "/run/secrets/none", corev1.SecretVolumeSource{SecretName: "nope", Optional: ptr.To(true)}),
				withSecretVolume("git", "/run/secrets/git", corev1.SecretVolumeSource{SecretName: "git", Optional: ptr.To(true),
					Items: []corev1.KeyToPath{{Key: "token", Path: "token"}, {Key: "nope", Path: "nope"}}})),
			want: map[string]hostFile{
				"/run/secrets/none":      {Mode: os.ModeDir | 0o755, UID: os.Getuid(), GID: os.Getgid()},
				"/run/secrets/git/token": {Data: "t0k", Mode: 0o644, UID: os.Getuid(), GID: os.Getgid()},
			},
			absent: []string{"/run/secrets/git/nope"},
		},
		{
			name: "emptyDirs, the image's directories and the working directory are the build user's",
			job: buildJob("dirs", "true", withEmptyDir("state", "/home/user/.local/share/buildkit"),
				func(ps *corev1.PodSpec) { ps.Containers[0].WorkingDir = "/workspace" }),
			want: map[string]hostFile{
				"/home/user/.local/share/buildkit": {Mode: os.ModeDir | 0o755, UID: uid, GID: gid},
				"/home/user/.local/share":          {Mode: os.ModeDir | 0o755, UID: uid, GID: gid},
				"/home/user":                       {Mode: os.ModeDir | 0o755, UID: uid, GID: gid},
				"/run/user/1000":                   {Mode: os.ModeDir | 0o700, UID: uid, GID: gid},
				"/home/user/.local/tmp":            {Mode: os.ModeDir | 0o755, UID: uid, GID: gid},
				"/workspace":                       {Mode: os.ModeDir | 0o755, UID: uid, GID: gid},
			},
		},
		{
			name: "the termination message file is the build user's, its directory root's",
			job:  buildJob("term", "true"),
			want: map[string]hostFile{
				"/dev/termination-log": {Mode: 0o666 &^ mask, UID: uid, GID: gid},
				"/dev":                 {Mode: os.ModeDir | 0o755&^mask, UID: os.Getuid(), GID: os.Getgid()},
			},
		},
		{name: "a missing key", job: buildJob("nokey", "true", withSecretVolume("git", "/run/secrets/git", corev1.SecretVolumeSource{
			SecretName: "git", Items: []corev1.KeyToPath{{Key: "nope", Path: "nope"}}})),
			wantErr: "mounting volume git at /run/secrets/git: secret builds/git has no key nope"},
		{name: "a missing Secret", job: buildJob("nosecret", "true", withSecretVolume("gone", "/run/secrets/gone", corev1.SecretVolumeSource{SecretName: "gone"})),
			wantErr: "mounting volume gone at /run/secrets/gone: reading secret builds/gone: "},
		{name: "env from a Secret", job: buildJob("valuefrom", "true", func(ps *corev1.PodSpec) {
			ps.Containers[0].Env = []corev1.EnvVar{{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "git"}, Key: "token"}}}}
		}), wantErr: "env TOKEN: the node does not support valueFrom"},
		{name: "a subPath", job: buildJob("subpath", "true", withSecretVolume("git", "/run/secrets/git", corev1.SecretVolumeSource{SecretName: "git"}),
			func(ps *corev1.PodSpec) { ps.Containers[0].VolumeMounts[0].SubPath = "token" }),
			wantErr: "volumeMount git: the node does not support subPath"},
		{name: "another volume type", job: buildJob("hostpath", "true", func(ps *corev1.PodSpec) {
			ps.Volumes = []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
			ps.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "host", MountPath: "/host"}}
		}), wantErr: "mounting volume host at /host: the node supports only emptyDir and secret volumes"},
		{name: "a mount without its volume", job: buildJob("novolume", "true", func(ps *corev1.PodSpec) {
			ps.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "ghost", MountPath: "/ghost"}}
		}), wantErr: "volumeMount ghost names no volume"},
		{name: "root", job: buildJob("root", "true", func(ps *corev1.PodSpec) { ps.SecurityContext.RunAsUser = ptr.To[int64](0) }),
			wantErr: "the node runs build containers only with a non-root runAsUser"},
		{name: "no command", job: buildJob("entrypoint", "true", func(ps *corev1.PodSpec) { ps.Containers[0].Command = nil }),
			wantErr: "container build has no command; the node does not run image entrypoints"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := root(t)
			_, _, _, err := n.prepare(context.Background(), tt.job, r)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]hostFile{}
			for p := range tt.want {
				got[p] = statFile(t, r+p)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			for _, p := range tt.absent {
				if _, err := os.Lstat(r + p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s: got %v, want it absent", p, err)
				}
			}
		})
	}
}

// TestNodeRunsJobs runs Jobs through the node as e2e tests do and checks what it reports
// on the apiserver: the container's termination message (its file, else the log tail
// under FallbackToLogsOnError), the Job's condition, and that the container sees its
// Secrets and its mapped paths.
func TestNodeRunsJobs(t *testing.T) {
	n, kube := nodeUnderTest(t)
	createSecret(t, kube.Client, "registry", map[string]string{"config.json": `{"auths":{}}`})
	createSecret(t, kube.Client, "git", map[string]string{"token": "t0k"})
	node := StartNode(t, kube.Client, "builds", n.bk)
	secrets := []func(*corev1.PodSpec){
		withSecretVolume("docker", "/home/user/.docker", corev1.SecretVolumeSource{SecretName: "registry"}),
		withSecretVolume("git", "/run/secrets/git", corev1.SecretVolumeSource{SecretName: "git"}),
		func(ps *corev1.PodSpec) {
			ps.Containers[0].Env = []corev1.EnvVar{{Name: "DOCKER_CONFIG", Value: "/home/user/.docker"}}
			ps.Containers[0].TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
		},
	}
	tests := []struct {
		name        string
		job         *batchv1.Job
		wantExit    int
		wantMessage string // the container's termination message
		wantReason  string // the Job's failure; "" for Complete
	}{
		{
			name: "the container reads its Secrets at mapped paths and reports a message",
			job: buildJob("reads", `set -e
test "$DOCKER_CONFIG" = "$HOME/.docker"
grep -q auths $DOCKER_CONFIG/config.json
cat /run/secrets/git/token > /dev/termination-log`, secrets...),
			wantMessage: "t0k",
		},
		{
			name:        "a failure without a message reports the log's tail",
			job:         buildJob("fails", "echo the build broke; exit 3", secrets...),
			wantExit:    3,
			wantMessage: "the build broke",
			wantReason:  "BackoffLimitExceeded",
		},
		{
			name:        "a pod the node refuses fails its Job",
			job:         buildJob("refused", "true", func(ps *corev1.PodSpec) { ps.SecurityContext = nil }),
			wantExit:    -1,
			wantMessage: "the node runs build containers only with a non-root runAsUser",
			wantReason:  "NodeRefused",
		},
	}
	if n.bk.cred != nil {
		tests = append(tests, struct {
			name        string
			job         *batchv1.Job
			wantExit    int
			wantMessage string
			wantReason  string
		}{
			// buildctl --metadata-file renames its file into place: not into a pod's /dev.
			name:        "the container cannot replace its termination message file",
			job:         buildJob("renames", "echo sha256:x > /home/user/m && mv /home/user/m /dev/termination-log", secrets...),
			wantExit:    1,
			wantMessage: "Permission denied",
			wantReason:  "BackoffLimitExceeded",
		})
	}
	ctx := context.Background()
	for _, tt := range tests {
		if _, err := kube.Client.BatchV1().Jobs("builds").Create(ctx, tt.job, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating job %s: %v", tt.job.Name, err)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var j *batchv1.Job
			err := WaitFor(60*time.Second, func() error {
				var err error
				if j, err = kube.Client.BatchV1().Jobs("builds").Get(ctx, tt.job.Name, metav1.GetOptions{}); err != nil {
					return err
				}
				if len(j.Status.Conditions) == 0 {
					return fmt.Errorf("job %s has not finished", j.Name)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			last := j.Status.Conditions[len(j.Status.Conditions)-1]
			switch {
			case tt.wantReason == "" && last.Type != batchv1.JobComplete:
				t.Errorf("job condition %s (%s: %s), want Complete", last.Type, last.Reason, last.Message)
			case tt.wantReason != "" && (last.Type != batchv1.JobFailed || last.Reason != tt.wantReason):
				t.Errorf("job condition %s (%s), want Failed (%s)", last.Type, last.Reason, tt.wantReason)
			}
			run := nodeRun(t, node, tt.job.Name)
			if run.ExitCode != tt.wantExit {
				t.Errorf("exit code %d, want %d; output:\n%s", run.ExitCode, tt.wantExit, run.Output)
			}
			term := podTermination(t, kube.Client, tt.job.Name)
			if !strings.Contains(term.Message, tt.wantMessage) {
				t.Errorf("termination message %q, want one containing %q", term.Message, tt.wantMessage)
			}
		})
	}
}

// nodeRun is the node's run of job.
func nodeRun(t *testing.T, n *Node, job string) NodeRun {
	t.Helper()
	for _, r := range n.Runs() {
		if r.Job == job {
			return r
		}
	}
	t.Fatalf("the node has no run of job %s", job)
	return NodeRun{}
}

// podTermination is how the container of job's pod terminated, as the node reported it.
func podTermination(t *testing.T, c kubernetes.Interface, job string) *corev1.ContainerStateTerminated {
	t.Helper()
	pods, err := c.CoreV1().Pods("builds").List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=" + job})
	if err != nil {
		t.Fatalf("listing the pods of job %s: %v", job, err)
	}
	if len(pods.Items) != 1 || len(pods.Items[0].Status.ContainerStatuses) != 1 {
		t.Fatalf("job %s has pods %+v, want one with one container", job, pods.Items)
	}
	term := pods.Items[0].Status.ContainerStatuses[0].State.Terminated
	if term == nil {
		t.Fatalf("job %s: the container has not terminated: %+v", job, pods.Items[0].Status.ContainerStatuses[0].State)
	}
	return term
}
