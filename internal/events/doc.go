// Package events owns promoter's HTTP receivers: registry notifications
// (POST /v1/events/registry for distribution, and one endpoint per vendor format under
// /v1/events/registry/: harbor, cloudevents, acr, gar, ecr, quay) and source push webhooks
// (POST /v1/events/source/{github,gitlab,generic}): branch pushes, and pushes of the tags
// a pipeline releases (source.releaseTags).
//
// Receivers is the one table of these endpoints (name, path, how each authenticates, the
// configuration key of its secret, its decoder): Register mounts it, and the configuration,
// the daemon and the Helm chart's test read it. The bearer-token rule is internal/bearer's.
//
// A receiver authenticates the request, bounds and decodes the body, keeps only what a
// pipeline cares about, and publishes it to the bus with a message id that de-duplicates
// it: a registry event's own id (or, for a payload without one, an id derived from what it
// says), a source change's pipeline and revision
// (types.SourceChanged.MsgID, shared with the source poller). It answers 2xx only after the bus acknowledged every kept event, so a 2xx means the
// event is durable; it publishes nothing from a body it rejects. An event it acknowledges
// without keeping is counted and logged with its reason (ignored.go), so that a 2xx after
// which nothing happened can be explained. It must not act on events
// (merging, building): consumers of the bus do that.
package events
