package config

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// Secret is a reference to a secret value: "env:NAME" reads an environment variable,
// "file:/path" reads a file (trailing newline removed), anything else is the value itself
// (discouraged outside development). A Secret never prints its value.
type Secret string

// IsSet reports whether a reference was given.
func (s Secret) IsSet() bool { return s != "" }

// Resolve returns the secret's value.
func (s Secret) Resolve() (string, error) {
	ref := string(s)
	switch {
	case strings.HasPrefix(ref, "env:"):
		name := strings.TrimPrefix(ref, "env:")
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return "", unavailable{fmt.Errorf("environment variable %s is not set", name)}
		}
		return v, nil
	case strings.HasPrefix(ref, "file:"):
		path := strings.TrimPrefix(ref, "file:")
		b, err := os.ReadFile(path)
		if err != nil {
			return "", unavailable{fmt.Errorf("reading secret file: %w", err)}
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", unavailable{fmt.Errorf("secret file %s is empty", path)}
		}
		return v, nil
	default:
		return ref, nil
	}
}

// String names where the secret comes from, never its value.
func (s Secret) String() string {
	ref := string(s)
	switch {
	case ref == "":
		return "<unset>"
	case strings.HasPrefix(ref, "env:"), strings.HasPrefix(ref, "file:"):
		return ref
	default:
		return "<inline secret>"
	}
}

// LogValue keeps the value out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// GoString keeps the value out of %#v output.
func (s Secret) GoString() string { return s.String() }

// unavailable is a Resolve error: ErrSecretUnavailable, with the text of what was missing.
type unavailable struct{ error }

func (u unavailable) Is(target error) bool { return target == ErrSecretUnavailable }
func (u unavailable) Unwrap() error        { return u.error }
