// Package config turns a YAML file, PROMOTER_* environment variables and command-line flags
// into one validated Config.
//
// It owns defaults, validation (every problem reported with its path) and the resolution of
// secret references (env:NAME, file:/path). It must not open ports, connect to anything, or
// log a secret's value.
package config
