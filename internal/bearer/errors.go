package bearer

import "errors"

// The reasons Check refuses a request; a server words its answer by them.
var (
	// ErrMissing is a request without an Authorization header.
	ErrMissing = errors.New("missing Authorization header")
	// ErrScheme is an Authorization header of another scheme than Bearer.
	ErrScheme = errors.New("authorization is not a Bearer token")
	// ErrWrong is a bearer token that is not the one wanted.
	ErrWrong = errors.New("wrong bearer token")
)
