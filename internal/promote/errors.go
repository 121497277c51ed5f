package promote

import (
	"errors"
	"fmt"
)

// ErrNotSigned means the signature gate (WithVerify) rejected the source: nothing was
// copied.
var ErrNotSigned = errors.New("source signature not verified")

// ErrNoVerifier means a target requires a signature but the Promoter has no gate
// (WithVerify): configure a verification key.
var ErrNoVerifier = errors.New("requires a signature, but no verification key is configured")

// ErrInvalidOption means an Option's value is out of range: New refuses it, naming the
// option and the value.
var ErrInvalidOption = errors.New("invalid promote option")

// optionError is an Option's refusal: its message alone (what to fix), matching
// ErrInvalidOption.
type optionError string

func (e optionError) Error() string        { return string(e) }
func (e optionError) Is(target error) bool { return target == ErrInvalidOption }

// ErrSource means the source cannot be read for a reason retrying will not fix (401, 403,
// 404): check the reference and the credentials for its registry.
var ErrSource = errors.New("source not readable")

// SourceError says which registry and reference could not be read and why.
type SourceError struct {
	Registry string
	Ref      string
	Status   int
	Err      error
}

func (e *SourceError) Error() string {
	hint := ""
	switch e.Status {
	case 401:
		hint = ": credentials missing or rejected (log in to the registry, e.g. docker login " + e.Registry + ")"
	case 403:
		hint = ": access denied (the credentials for " + e.Registry + " lack pull permission on this repository)"
	case 404:
		hint = ": not found (check the repository and tag or digest)"
	}
	return fmt.Sprintf("reading source %s from registry %s%s: %v", e.Ref, e.Registry, hint, e.Err)
}

// Is makes errors.Is(err, ErrSource) true.
func (e *SourceError) Is(target error) bool { return target == ErrSource }

func (e *SourceError) Unwrap() error { return e.Err }
