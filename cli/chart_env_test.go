package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/urfave/cli/v2"
)

// Every environment variable the Helm chart sets (its ConfigMap and each
// pod's env) is one that a shopstream command reads, so a name the chart
// and the binary spell differently fails here, not in a cluster.
func TestTheChartSetsOnlyVariablesShopstreamReads(t *testing.T) {
	known := map[string]bool{
		"POD_NAME": true, // the pod's own name, used through $(POD_NAME)
		// The AWS SDK's own (blob storage credentials, from a Secret).
	}
	var walk func(cmds []*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			for _, f := range c.Flags {
				if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
					for _, e := range ev.GetEnvVars() {
						known[e] = true
					}
				}
			}
			walk(c.Subcommands)
		}
	}
	walk(newApp(nil, nil, nil).Commands)
	files, err := filepath.Glob("../environment/helm/shopstream/templates/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no chart templates: %v", err)
	}
	envName := regexp.MustCompile(`(?m)^\s*- name: ([A-Z][A-Z0-9_]+)\s*$`)
	dataKey := regexp.MustCompile(`(?m)^  ([A-Z][A-Z0-9_]+): `)
	seen := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var names [][]string
		names = append(names, envName.FindAllStringSubmatch(string(b), -1)...)
		if filepath.Base(f) == "configmap.yaml" {
			names = append(names, dataKey.FindAllStringSubmatch(string(b), -1)...)
		}
		for _, m := range names {
			seen++
			if !known[m[1]] {
				t.Errorf("%s sets %s, which no shopstream command reads", filepath.Base(f), m[1])
			}
		}
	}
	if seen < 30 {
		t.Fatalf("found %d variables in the chart: the patterns no longer match it", seen)
	}
}
