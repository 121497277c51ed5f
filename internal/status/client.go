// Package status owns the daemon's status API, both sides of it: the wire types of
// /v1/revisions, the handler the daemon serves on its status listener (NewHandler), and a
// Client that `promoter status`, `promoter dev` and the end-to-end tests share.
//
// The handler reads the revision state only through the Reader it is given, and never
// writes it; the client reads it only through the API.
package status

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/promoter-dev/promoter/internal/types"
)

// Page is the body of GET /v1/revisions: revisions in the order asked (key order by
// default), and the cursor of the next page, empty on the last one. The revisions are the
// state's own (types.Revision), each merged platform's evidence included (NewHandler).
type Page struct {
	Revisions []*types.Revision `json:"revisions"`
	Next      string            `json:"next,omitempty"`
}

// PageSize is how many revisions List asks for per request.
const PageSize = 500

// Client reads a daemon's status API at URL (its status listener, e.g.
// http://127.0.0.1:8081), with Token as bearer token when the daemon sets
// auth.statusToken.
type Client struct {
	URL   string
	Token string
	// HTTP sends the requests; nil uses http.DefaultClient.
	HTTP *http.Client
}

// Revision reads one revision's state.
func (c *Client) Revision(ctx context.Context, pipeline, revision string) (*types.Revision, error) {
	var r types.Revision
	if err := c.get(ctx, "/v1/revisions/"+url.PathEscape(pipeline)+"/"+url.PathEscape(revision), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// List follows the pages of /v1/revisions (of pipeline, or all when empty) until the last
// one, or until limit revisions (0: no limit).
func (c *Client) List(ctx context.Context, pipeline string, limit int) ([]*types.Revision, error) {
	var out []*types.Revision
	after := ""
	for {
		size := PageSize
		if limit > 0 {
			size = min(size, limit-len(out))
		}
		q := url.Values{"limit": {strconv.Itoa(size)}}
		if pipeline != "" {
			q.Set("pipeline", pipeline)
		}
		if after != "" {
			q.Set("after", after)
		}
		var page Page
		if err := c.get(ctx, "/v1/revisions?"+q.Encode(), &page); err != nil {
			return nil, err
		}
		out = append(out, page.Revisions...)
		if page.Next == "" || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		after = page.Next
	}
}

func (c *Client) get(ctx context.Context, path string, v any) error {
	base := strings.TrimSuffix(c.URL, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("asking the daemon at %s (is `promoter serve` running? its status address is the config key status): %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		if resp.StatusCode == http.StatusNotFound && strings.HasPrefix(path, "/v1/revisions/") {
			return fmt.Errorf("%w: %s", ErrNotFound, e.Error)
		}
		return &ResponseError{StatusCode: resp.StatusCode, Status: resp.Status, Message: e.Error}
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decoding daemon answer: %w", err)
	}
	return nil
}
