package events

import (
	"net/http"
	"time"
)

// quayPush is Quay's "Push to Repository" notification (Quay, "Repository notifications";
// quay/quay notifications/__init__.py build_repository_event_data, and the repo_push event
// endpoints/v2 spawns after a manifest is tagged). Quay's webhook posts it as it is, with
// Content-Type application/json and no header of the user's: it names the tags pushed,
// but neither their digests, nor an event id, nor a time. Its other fields (name,
// namespace, homepage) say nothing more.
type quayPush struct {
	Repository string `json:"repository"` // "namespace/repo"
	DockerURL  string `json:"docker_url"` // "quay.io/namespace/repo"
	// UpdatedTags is nil for Quay's other events (builds, scans, mirroring), which a
	// webhook may also be configured with.
	UpdatedTags *[]string `json:"updated_tags"`
}

// quayIDWindow is the time a Quay push is named by (see quay's derived id).
const quayIDWindow = time.Minute

// decodeQuay reads POST /v1/events/registry/quay. Quay's webhook can set no header, so the
// token is the webhook URL's ?token= (checkURLToken).
func (r *Receiver) decodeQuay(w http.ResponseWriter, req *http.Request) ([]registryOutcome, error) {
	if err := checkURLToken(req, r.secrets["quay"], "auth.quay.token", "Quay notifications"); err != nil {
		return nil, err
	}
	n, err := readJSONBody[quayPush](w, req, r.maxBody, "Quay notification")
	if err != nil {
		return nil, err
	}
	if n.UpdatedTags == nil {
		return []registryOutcome{ignored("other", reasonNotAPush)}, nil // builds, scans, mirroring
	}
	if n.Repository == "" {
		return nil, reject(http.StatusBadRequest, `Quay push notification has no "repository"; leave the webhook's body template empty`)
	}
	if len(*n.UpdatedTags) == 0 {
		return []registryOutcome{ignored("push", reasonNoTag)}, nil
	}
	// Quay's payload has no id and no time, so the push is named by what it says (derivedID)
	// and by the receiver's clock to the minute. A redelivery within the minute (a retry
	// after a lost answer) is then one event; a later push of the same tag, even of the
	// same content, is a new one, so a moved arch tag is never taken for a repeat. A
	// redelivery in a later minute is processed twice, which is harmless: the merger reads
	// the registry, and a revision that already holds the tag's digest does not change.
	at := r.now().UTC().Truncate(quayIDWindow)
	host := urlHost(n.DockerURL) // "quay.io/ns/repo", or with a scheme on some installations
	pushes := make([]imagePush, 0, len(*n.UpdatedTags))
	for _, tag := range *n.UpdatedTags {
		pushes = append(pushes, imagePush{host: host, repo: n.Repository, tag: tag, at: at})
	}
	return r.classifyAll("quay", pushes)
}
