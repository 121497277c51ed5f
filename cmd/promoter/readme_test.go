package main

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEListsEveryCommand keeps the README's CLI reference true to the commands.
func TestREADMEListsEveryCommand(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, c := range newRootCmd().Commands() {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		if !strings.Contains(readme, "| `promoter "+c.Name()+"` |") {
			t.Errorf("README CLI reference lacks `promoter %s` (%s)", c.Name(), c.Short)
		}
	}
}
