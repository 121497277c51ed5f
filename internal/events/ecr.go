package events

import (
	"net/http"
	"strings"
	"time"
)

// ecrEvent is an EventBridge event from Amazon ECR (AWS, "Amazon ECR events and
// EventBridge"), as an EventBridge API destination posts it: the whole event, unless the
// rule's target transforms its input.
type ecrEvent struct {
	ID         string    `json:"id"`
	DetailType string    `json:"detail-type"`
	Source     string    `json:"source"`
	Account    string    `json:"account"`
	Time       time.Time `json:"time"`
	Region     string    `json:"region"`
	Detail     struct {
		Result         string `json:"result"`
		RepositoryName string `json:"repository-name"`
		ImageDigest    string `json:"image-digest"`
		ActionType     string `json:"action-type"`
		ImageTag       string `json:"image-tag"`
	} `json:"detail"`
}

// The event of an image action, and the action and result of a completed push.
const (
	ecrSource      = "aws.ecr"
	ecrImageAction = "ECR Image Action"
	ecrPush        = "PUSH"
	ecrSuccess     = "SUCCESS"
)

// decodeECR reads POST /v1/events/registry/ecr from an EventBridge API destination. Its
// connection sends an API key as a header of our choosing: name it Authorization, with
// "Bearer <auth.ecr.token>" as its value (checkToken; a connection with Basic
// authorization and the token as password works too).
func (r *Receiver) decodeECR(w http.ResponseWriter, req *http.Request) ([]registryOutcome, error) {
	if err := checkToken(req, r.secrets["ecr"], "auth.ecr.token", "Amazon ECR events"); err != nil {
		return nil, err
	}
	e, err := readJSONBody[ecrEvent](w, req, r.maxBody, "EventBridge event")
	if err != nil {
		return nil, err
	}
	if e.Source != ecrSource || e.ID == "" {
		return nil, reject(http.StatusBadRequest, `not an ECR EventBridge event (source %q, id %q): the rule must match source "aws.ecr" and its target must send the event as it is, without an input transformer`, e.Source, e.ID)
	}
	d := e.Detail
	if e.DetailType != ecrImageAction {
		return []registryOutcome{ignored("other", reasonNotAPush)}, nil // scans, pull-through cache, replication
	}
	if d.ActionType != ecrPush {
		return []registryOutcome{ignored(ecrAction(d.ActionType), notPushReason(ecrAction(d.ActionType)))}, nil // deletes
	}
	if d.Result != ecrSuccess {
		return []registryOutcome{ignored("push", reasonPushFailed)}, nil
	}
	if d.RepositoryName == "" {
		return nil, reject(http.StatusBadRequest, "ECR event %s: push without detail.repository-name", e.ID)
	}
	// The event names no host: its account and region do (ecrHost), and stagingFor holds
	// an ECR pipeline to exactly that registry.
	return r.classifyAll("ecr", []imagePush{{
		id: e.ID, host: ecrHost(e.Account, e.Region), repo: d.RepositoryName,
		tag: d.ImageTag, digest: d.ImageDigest, at: e.Time,
	}})
}

// ecrHost is the private registry of account in region,
// "<account>.dkr.ecr.<region>.amazonaws.com" ("amazonaws.com.cn" in the China regions);
// "" when the event lacks either.
func ecrHost(account, region string) string {
	if account == "" || region == "" {
		return ""
	}
	domain := "amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		domain = "amazonaws.com.cn"
	}
	return account + ".dkr.ecr." + region + "." + domain
}

// ecrAction bounds the metric label to ECR's image actions.
func ecrAction(a string) string {
	switch a {
	case ecrPush:
		return "push"
	case "DELETE":
		return "delete"
	}
	return "other"
}
