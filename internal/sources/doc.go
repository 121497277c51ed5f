// Package sources owns following the pipelines' source branches without a webhook. A
// Poller lists each polled pipeline's branch head on start and every source.poll, and
// publishes a head it has not published before as the event a push webhook publishes
// (types.SourceChanged on types.SubjectSourceChanged), under the same message id
// (types.SourceChanged.MsgID), so a webhook and a poll of one head are one message and one
// build. A lost webhook then delays a build by at most the interval.
//
// The listing is what `git ls-remote <repo> refs/heads/<branch>` does, in Go: go-git's
// Remote.List over git://, http(s):// and ssh (ssh:// and scp-style URLs), so the daemon
// needs no git binary (list.go). It reads the daemon's environment as git and ssh read it,
// for the part a listing needs: a poll token for http(s), GIT_SSL_CAINFO, proxies, and the
// ssh keys and known hosts of ~/.ssh or GIT_SSH_COMMAND (auth.go, ssh.go, sshcommand.go).
//
// It must not decide what a change means (internal/advance does), read or write the
// revision state or a registry, fetch anything but the refs, or run a program.
package sources
