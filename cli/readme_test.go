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
	for _, s := range config.Settings() {
		if !strings.Contains(string(readme), "`--"+s.Name+"`") || !strings.Contains(string(readme), "`"+s.Env+"`") {
			t.Errorf("README.md does not list --%s / %s", s.Name, s.Env)
		}
	}
	for _, cmd := range []string{"make run", "make test"} {
		if !strings.Contains(string(readme), cmd) {
			t.Errorf("README.md does not show %q", cmd)
		}
	}
}
