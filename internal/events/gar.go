package events

import (
	"encoding/base64"
	"net/http"
	"strings"
	"time"
)

// Google Artifact Registry publishes a message to the Pub/Sub topic "gcr" of its project
// for every image upload, new tag and deletion (Google Cloud, "Configuring Pub/Sub
// notifications"); a push subscription delivers it wrapped (Google Cloud, Pub/Sub "Push
// subscriptions"): the message's data, base64-encoded, in an envelope that names the
// message and the subscription.
type (
	pubsubPush struct {
		// Action is set when the body is a notification without its envelope (a
		// subscription with payload unwrapping on).
		Action  string `json:"action"`
		Message *struct {
			Data        string    `json:"data"`
			MessageID   string    `json:"messageId"`
			PublishTime time.Time `json:"publishTime"`
		} `json:"message"`
	}
	// garNotification is the message data: image references, the digest one always and
	// the tag one only for a push that tagged the image.
	garNotification struct {
		Action string `json:"action"`
		Digest string `json:"digest"` // "LOCATION-docker.pkg.dev/PROJECT/REPO/IMAGE@sha256:..."
		Tag    string `json:"tag"`    // "LOCATION-docker.pkg.dev/PROJECT/REPO/IMAGE:TAG"
	}
)

// garInsert is the action of an upload or a new tag; DELETE is acknowledged and ignored.
const garInsert = "INSERT"

// decodeGAR reads POST /v1/events/registry/gar from a Pub/Sub push subscription. Pub/Sub
// can set no header but its own OIDC token, which is not verified here, so the token is
// the push endpoint's ?token= (checkURLToken).
func (r *Receiver) decodeGAR(w http.ResponseWriter, req *http.Request) ([]registryOutcome, error) {
	if err := checkURLToken(req, r.secrets["gar"], "auth.gar.token", "Artifact Registry notifications"); err != nil {
		return nil, err
	}
	env, err := readJSONBody[pubsubPush](w, req, r.maxBody, "Pub/Sub push")
	if err != nil {
		return nil, err
	}
	if env.Message == nil {
		if env.Action != "" {
			return nil, reject(http.StatusBadRequest, `decoding Pub/Sub push: no "message", and the body is an Artifact Registry notification itself: turn payload unwrapping off on the push subscription`)
		}
		return nil, reject(http.StatusBadRequest, `decoding Pub/Sub push: no "message"; send the push request as Pub/Sub makes it ({"message": {"data": ..., "messageId": ...}, "subscription": ...})`)
	}
	m := env.Message
	// A relay that forwards the message without its messageId leaves the push to be named
	// by what it says (derivedID), as Harbor's and Quay's are.
	name := "Pub/Sub message " + m.MessageID
	if m.MessageID == "" {
		name = "Pub/Sub message without messageId"
	}
	if m.Data == "" {
		return nil, reject(http.StatusBadRequest, "%s has no data", name)
	}
	data, err := base64.StdEncoding.DecodeString(m.Data)
	if err != nil {
		return nil, reject(http.StatusBadRequest, "%s: data is not base64: %v", name, err)
	}
	var n garNotification
	if err := decodeJSON(data, &n, false); err != nil {
		return nil, reject(http.StatusBadRequest, "%s: decoding Artifact Registry notification: %v", name, err)
	}
	if n.Action != garInsert {
		return []registryOutcome{ignored(garAction(n.Action), notPushReason(garAction(n.Action)))}, nil
	}
	p, err := n.push()
	if err != nil {
		return nil, reject(http.StatusBadRequest, "%s: %v", name, err)
	}
	p.id, p.at = m.MessageID, m.PublishTime
	return r.classifyAll("gar", []imagePush{p})
}

// push reads the image references: the tag one names the host, the repository and the
// tag; the digest one the digest (and, for an untagged push, the repository).
func (n garNotification) push() (imagePush, error) {
	var p imagePush
	if n.Digest != "" {
		if !strings.Contains(n.Digest, "@") {
			return p, reject(http.StatusBadRequest, "digest %q is not an image reference HOST/PATH@sha256:...", n.Digest)
		}
		p.host, p.repo, p.digest = splitReference(n.Digest)
	}
	if n.Tag != "" {
		host, repo, tag := splitReference(n.Tag)
		if tag == "" || strings.Contains(n.Tag, "@") {
			return p, reject(http.StatusBadRequest, "tag %q is not an image reference HOST/PATH:TAG", n.Tag)
		}
		p.host, p.repo, p.tag = host, repo, tag // the tag's image, should the two differ
	}
	if p.repo == "" {
		return p, reject(http.StatusBadRequest, `notification names no image: neither "digest" nor "tag" is set`)
	}
	return p, nil
}

// splitReference splits an image reference, "HOST/PATH:TAG" or "HOST/PATH@DIGEST", into
// the registry host ("" when the reference names none), the repository path and the tag
// or digest ("" when it has neither).
func splitReference(ref string) (host, repo, tagOrDigest string) {
	name := ref
	if n, d, ok := strings.Cut(ref, "@"); ok {
		name, tagOrDigest = n, d
	} else if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		name, tagOrDigest = ref[:i], ref[i+1:]
	}
	host, repo = hostAndPath(name)
	return host, repo, tagOrDigest
}

// garAction bounds the metric label to Artifact Registry's actions.
func garAction(a string) string {
	switch a {
	case garInsert:
		return "push"
	case "DELETE":
		return "delete"
	}
	return "other"
}
