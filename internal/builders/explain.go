package builders

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/promoter-dev/promoter/internal/types"
)

// Where the default Job template mounts the Secrets a request names. They are here, not
// only in the template, because failureCause recognises them in buildctl's errors.
const (
	// GitCredentialsDir holds build.gitSecret: key "token" or "ssh-privatekey".
	GitCredentialsDir = "/run/promoter/git"
	// BuildSecretsDir/<i>/<id> is build.secrets[i].
	BuildSecretsDir = "/run/promoter/secrets"
)

// Keys of build.gitSecret the default Job template reads.
const (
	GitTokenKey = "token"          // https: BuildKit's GIT_AUTH_TOKEN
	GitSSHKey   = "ssh-privatekey" // ssh: the key of a kubernetes.io/ssh-auth Secret
)

// failureCause is what a user must read of a failed build's output: buildctl's error
// line, then the failing step's last log lines, and first, when the output shows it, what
// to fix: a Secret the Job could not mount, or a git server that refused (the absence of)
// credentials. It returns "" when the output has nothing to go on.
func failureCause(req types.BuildRequest, namespace, output string) string {
	lines := strings.Split(strings.TrimRight(output, "\n"), "\n")
	errLine := lastErrorLine(lines)
	if errLine == "" {
		return ""
	}
	cause := errLine
	if step, log := failedStep(lines); step != "" {
		cause += "; " + step
		if log != "" {
			cause += ": " + log
		}
	}
	if hint := secretHint(req, namespace, output); hint != "" {
		cause = hint + ": " + cause
	}
	if hint := sandboxHint(output); hint != "" {
		cause = hint + ": " + cause
	}
	return cause
}

// sandboxHints are what rootless BuildKit prints when the pod's security settings keep it
// from making its namespaces, with what to set (each seen on a real node; see
// job.yaml.tmpl).
var sandboxHints = []struct{ sign, hint string }{
	{"fork/exec /proc/self/exe: operation not permitted",
		"rootlesskit cannot create a user namespace: the build container needs seccompProfile (and appArmorProfile) type Unconfined"},
	{"newuidmap: write to uid_map failed",
		"newuidmap/newgidmap could not map the build user's IDs: they need file capabilities (cap_setuid, cap_setgid) in the image, and allowPrivilegeEscalation must not be false"},
	{`mount proc:/proc`,
		"a RUN step cannot mount /proc in an unprivileged pod: set BUILDKITD_FLAGS=--oci-worker-no-process-sandbox"},
}

// sandboxHint names the security setting the output shows is missing, or "".
func sandboxHint(output string) string {
	for _, h := range sandboxHints {
		if strings.Contains(output, h.sign) {
			return h.hint
		}
	}
	return ""
}

// lastErrorLine is the last line buildctl (or rootlesskit, "[rootlesskit:parent] error:
// ...") printed as its error, else the last non-empty line that is not the exit trap's
// noise of buildctl-daemonless.sh.
func lastErrorLine(lines []string) string {
	last := ""
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "error: ") || strings.Contains(l, "] error: ") {
			return l
		}
		if last == "" && l != "" && !strings.HasPrefix(l, "…") && !trapNoise.MatchString(l) {
			last = l
		}
	}
	return last
}

// trapNoise is what buildctl-daemonless.sh's exit trap prints when its buildkitd is
// already gone.
var trapNoise = regexp.MustCompile(`^sh: can't kill pid [0-9]+: No such process$`)

// stepHeader is how buildctl's plain progress opens the log box of the step that failed:
// " > [stage 2/2] RUN make:".
var stepHeader = regexp.MustCompile(`^ > (\[.*\] .*):$`)

// failedStep finds the failing step's box (between " > [step]:" and "------") and returns
// the step and its log lines, without BuildKit's timestamps, joined with " | ".
func failedStep(lines []string) (step, log string) {
	for i := len(lines) - 1; i >= 0; i-- {
		m := stepHeader.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		var out []string
		for _, l := range lines[i+1:] {
			if strings.HasPrefix(l, "------") {
				break
			}
			if l = strings.TrimSpace(stepTime.ReplaceAllString(l, "")); l != "" && !gitNoise.MatchString(l) {
				out = append(out, l)
			}
		}
		return m[1], strings.Join(out, " | ")
	}
	return "", ""
}

// gitNoise are the lines BuildKit's git source prints before every fetch: it creates its
// cache repository, then looks for the commit there first.
var gitNoise = regexp.MustCompile(`^(Initialized empty Git repository in |fatal: Not a valid object name [0-9a-f]+\^\{commit\}$)`)

// stepTime is the elapsed-seconds prefix of a step's log line: "0.123 make: ...".
var stepTime = regexp.MustCompile(`^\s*[0-9]+\.[0-9]+ `)

// Signs in git's output that the server wants credentials it did not get, or refused the
// ones it got.
var gitAuthFailures = []string{
	"could not read Username", "terminal prompts disabled", "Authentication failed",
	"Permission denied (publickey", "HTTP Basic: Access denied", "returned error: 401", "returned error: 403",
}

// secretHint says which Secret to fix when the output shows buildctl could not read a
// mounted one (the default template mounts them optional, so a missing Secret or key
// gives a missing file instead of a pod that never starts), or that git wanted other
// credentials.
func secretHint(req types.BuildRequest, namespace, output string) string {
	if req.GitSecret != "" && strings.Contains(output, GitCredentialsDir+"/") {
		return fmt.Sprintf("the git credentials Secret %q (build.gitSecret of pipeline %s) is missing from namespace %s or has no key %q",
			req.GitSecret, req.Pipeline, namespace, gitCredentialKey(req.SourceRepo))
	}
	for i, s := range req.Secrets {
		if strings.Contains(output, fmt.Sprintf("%s/%d/", BuildSecretsDir, i)) {
			return fmt.Sprintf("build secret %s: Secret %q (build.secrets[%d] of pipeline %s) is missing from namespace %s or has no key %q",
				s.ID, s.Secret, i, req.Pipeline, namespace, s.Key)
		}
	}
	for _, sign := range gitAuthFailures {
		if !strings.Contains(output, sign) {
			continue
		}
		if req.GitSecret == "" {
			return fmt.Sprintf("the git server of %s asked for credentials: for a private repository, set build.gitSecret of pipeline %s to a Secret in namespace %s with key %q",
				req.SourceRepo, req.Pipeline, namespace, gitCredentialKey(req.SourceRepo))
		}
		return fmt.Sprintf("the git server of %s refused the credentials in Secret %q (build.gitSecret of pipeline %s)",
			req.SourceRepo, req.GitSecret, req.Pipeline)
	}
	return ""
}

// gitCredentialKey is the key of build.gitSecret a source URL needs: ssh and scp-style
// URLs authenticate with a key, http(s) with a token.
func gitCredentialKey(repo string) string {
	if gitUsesSSH(repo) {
		return GitSSHKey
	}
	return GitTokenKey
}

// gitUsesSSH reports whether BuildKit fetches repo over ssh: an ssh:// URL or scp-style
// user@host:path.
func gitUsesSSH(repo string) bool {
	if strings.HasPrefix(repo, "ssh://") {
		return true
	}
	return !strings.Contains(repo, "://") && scpStyle.MatchString(repo)
}

var scpStyle = regexp.MustCompile(`^[A-Za-z0-9_.-]+@[A-Za-z0-9.-]+:`)
