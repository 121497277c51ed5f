package registry

import (
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Referrers lists the OCI referrers of subject as go-containerregistry's remote.Referrers
// does: from the referrers API, or, on a registry without it, from the sha256-<hex>
// fallback tag. That costs two round trips on such a registry (distribution's registry
// is one), for every manifest a promotion, a signature or a verification looks at. A
// reusing Client remembers, for its generation, the hosts that answered the API with a
// refusal (recorded by its transport, see refusals), and asks them for the fallback tag
// directly: one round trip. opts are the remote options of the call (a Puller, a
// context).
func (c Client) Referrers(subject name.Digest, opts ...remote.Option) (v1.ImageIndex, error) {
	if c.pool == nil || !c.pool.current(c).lacksReferrersAPI(subject.RegistryStr()) {
		return remote.Referrers(subject, opts...)
	}
	tag := subject.Context().Tag(AccessoryTag(subject.DigestStr(), ReferrersFallback))
	idx, err := remote.Index(tag, opts...)
	if IsStatus(err, http.StatusNotFound) {
		return empty.Index, nil // no referrers yet, as remote.Referrers answers
	}
	return idx, err
}

// noReferrersAPI reports whether an answer to a referrers API request says the registry
// has no such API: the statuses on which go-containerregistry falls back to the tag.
func noReferrersAPI(req *http.Request, resp *http.Response) bool {
	if req.Method != http.MethodGet || !strings.Contains(req.URL.Path, "/referrers/") {
		return false
	}
	switch resp.StatusCode {
	case http.StatusNotFound, http.StatusBadRequest, http.StatusNotAcceptable:
		return true
	}
	return false
}

func (g *generation) lacksReferrersAPI(host string) bool {
	_, ok := g.noReferrers.Load(host)
	return ok
}
