// Package sources owns following the pipelines' source branches without a webhook. A
// Poller lists each polled pipeline's branch head with `git ls-remote` on start and every
// source.poll, and publishes a head it has not published before as the event a push
// webhook publishes (types.SourceChanged on types.SubjectSourceChanged), under the same
// message id (types.SourceChanged.MsgID), so a webhook and a poll of one head are one
// message and one build. A lost webhook then delays a build by at most the interval.
//
// It must not decide what a change means (internal/advance does), read or write the
// revision state or a registry, or fetch anything but the refs: it runs `git ls-remote`
// and nothing else.
package sources
