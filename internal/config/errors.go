package config

import "errors"

var (
	// ErrInvalid is a configuration that does not validate: Load and Validate return a
	// *ValidationError, which is ErrInvalid and lists every problem with its path.
	ErrInvalid = errors.New("invalid configuration")
	// ErrSecretUnavailable is a secret reference whose value cannot be read: an unset
	// environment variable, or a missing or empty file.
	ErrSecretUnavailable = errors.New("secret unavailable")
)
