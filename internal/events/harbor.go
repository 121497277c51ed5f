package events

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Harbor's webhook payloads (goharbor/harbor src/pkg/notifier/model/event.go). Harbor sends
// them in one of two formats, chosen per webhook policy: "Default", this JSON as it is, and
// "CloudEvents", the same event data in a structured CloudEvents envelope of type
// harbor.artifact.pushed (src/pkg/notifier/formats). It sends the policy's "Auth Header"
// as the Authorization header, as typed.
type (
	harborPayload struct {
		Type      string          `json:"type"`
		OccurAt   int64           `json:"occur_at"`
		Operator  string          `json:"operator"`
		EventData harborEventData `json:"event_data"`
	}
	harborEventData struct {
		Resources []struct {
			Digest      string `json:"digest"`
			Tag         string `json:"tag"`
			ResourceURL string `json:"resource_url"`
		} `json:"resources"`
		Repository struct {
			Name         string `json:"name"`
			Namespace    string `json:"namespace"`
			RepoFullName string `json:"repo_full_name"`
		} `json:"repository"`
	}
)

// harborPushArtifact is the Default format's type of an artifact push; harborPushImage is
// Harbor 1.x's (1.9 and 1.10, goharbor/harbor src/pkg/notification/model), whose payload is
// the same envelope with the same field names.
const (
	harborPushArtifact = "PUSH_ARTIFACT"
	harborPushImage    = "pushImage"
)

// harborTypes are the event types Harbor 2.x and 1.x send that are no push: acknowledged
// and ignored as not_a_push (any other type is unknown_type).
var harborTypes = []string{
	"PULL_ARTIFACT", "DELETE_ARTIFACT", "SCANNING_COMPLETED", "SCANNING_STOPPED", "SCANNING_FAILED",
	"QUOTA_EXCEED", "QUOTA_WARNING", "REPLICATION", "TAG_RETENTION", "UPLOAD_CHART", "DOWNLOAD_CHART", "DELETE_CHART",
	"pullImage", "deleteImage", "uploadChart", "downloadChart", "deleteChart", "scanningCompleted", "scanningFailed",
	"projectQuota", "testEndpoint",
}

// decodeHarbor reads POST /v1/events/registry/harbor, in either of Harbor's formats.
func (r *Receiver) decodeHarbor(w http.ResponseWriter, req *http.Request) ([]registryOutcome, error) {
	if err := checkToken(req, r.secrets["harbor"], "auth.harbor.token", "Harbor webhooks"); err != nil {
		return nil, err
	}
	body, err := readBody(w, req, r.maxBody, jsonMediaType, cloudEventsMediaType)
	if err != nil {
		return nil, err
	}
	if mediaType(req) == cloudEventsMediaType {
		return r.classifyCloudEvents("harbor", req, body)
	}
	var p harborPayload
	if err := decodeJSON(body, &p, false); err != nil {
		return nil, reject(http.StatusBadRequest, "decoding Harbor payload: %v", err)
	}
	if p.Type == "" {
		return nil, reject(http.StatusBadRequest, `decoding Harbor payload: no "type"; is the webhook's payload format Default or CloudEvents?`)
	}
	if p.Type != harborPushArtifact && p.Type != harborPushImage {
		reason := reasonUnknownType
		if contains(harborTypes, p.Type) {
			reason = reasonNotAPush
		}
		return []registryOutcome{ignored(harborAction(p.Type), reason)}, nil
	}
	pushes, err := p.EventData.pushes("", time.Unix(p.OccurAt, 0))
	if err != nil {
		return nil, err
	}
	return r.classifyAll("harbor", pushes)
}

// pushes are the artifacts of one Harbor event; id is the CloudEvents id, "" for the
// Default format (which has none).
func (d harborEventData) pushes(id string, at time.Time) ([]imagePush, error) {
	repo := d.Repository.RepoFullName
	if repo == "" {
		return nil, reject(http.StatusBadRequest, `Harbor event has no repository.repo_full_name`)
	}
	out := make([]imagePush, 0, len(d.Resources))
	for i, res := range d.Resources {
		p := imagePush{host: urlHost(res.ResourceURL), repo: repo, tag: res.Tag, digest: res.Digest, at: at}
		if strings.HasPrefix(res.Tag, "sha256:") {
			p.tag = "" // Harbor names an untagged artifact by its digest
		}
		if id != "" {
			p.id = fmt.Sprintf("%s/%d", id, i)
		}
		out = append(out, p)
	}
	return out, nil
}

// harborAction bounds the metric label to a few of Harbor's event types.
func harborAction(t string) string {
	switch t {
	case harborPushArtifact, harborPushImage:
		return "push"
	case "PULL_ARTIFACT", "pullImage":
		return "pull"
	case "DELETE_ARTIFACT", "deleteImage":
		return "delete"
	}
	return "other"
}

// classifyAll classifies pushes decoded from one notification.
func (r *Receiver) classifyAll(source string, pushes []imagePush) ([]registryOutcome, error) {
	out := make([]registryOutcome, 0, len(pushes))
	for i, p := range pushes {
		o, err := r.classifyPush(source, p)
		if err != nil {
			return nil, reject(http.StatusBadRequest, "push %d: %v", i, err)
		}
		out = append(out, o)
	}
	return out, nil
}
