package main

import (
	"bytes"
	"context"
	"testing"
)

// runCLI runs promoter in-process with args and returns stdout, stderr and the error.
// Shared by every command's tests.
func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCmd()
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return stdout.String(), stderr.String(), err
}
