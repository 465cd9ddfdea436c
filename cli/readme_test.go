package main

import (
	"os"
	"strings"
	"testing"

	"github.com/shopstream/shopstream/internal/config"
)

// The README's configuration table must name every setting the binary has.
func TestReadmeListsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range config.EnvTable() {
		if !strings.Contains(string(readme), "`"+row[0]+"`") || !strings.Contains(string(readme), "`"+row[1]+"`") {
			t.Errorf("README.md does not list %s / %s", row[0], row[1])
		}
	}
	for _, cmd := range []string{"make run", "make test"} {
		if !strings.Contains(string(readme), cmd) {
			t.Errorf("README.md does not show %q", cmd)
		}
	}
}
