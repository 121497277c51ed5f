package registry

import (
	"context"
	"errors"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// IsStatus reports whether err is a registry's answer with one of the HTTP status codes.
func IsStatus(err error, codes ...int) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	for _, c := range codes {
		if terr.StatusCode == c {
			return true
		}
	}
	return false
}

// IsNotFound reports whether err is a registry's 404: the manifest, blob or repository is
// not there. Any other failure says nothing about whether it is.
func IsNotFound(err error) bool { return IsStatus(err, http.StatusNotFound) }

// Resolve gives the digest ref points at now, or "" when the registry does not hold it.
// Only "not found" counts as absent: any other failure is an error, so that an unreachable
// registry is never taken for an empty one.
func (c Client) Resolve(ctx context.Context, ref name.Reference) (string, error) {
	desc, err := remote.Head(ref, c.Remote(ctx)...)
	switch {
	case err == nil:
		return desc.Digest.String(), nil
	case IsNotFound(err):
		return "", nil
	}
	return "", err
}
