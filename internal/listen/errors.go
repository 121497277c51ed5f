package listen

import "errors"

// ErrNegativeLimit is a Limits field below zero (zero means its default); the error's
// message names the field.
var ErrNegativeLimit = errors.New("must not be negative")
