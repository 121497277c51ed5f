package localregistry

import "errors"

// ErrInvalidOption is returned by Start when an option or the storage dir is unusable. It
// is a caller's mistake, not a missing component, so tests fail on it rather than skip.
var ErrInvalidOption = errors.New("invalid registry option")
