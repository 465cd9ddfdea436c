package main

import (
	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/config"
)

// configFlags turns config's settings table into urfave flags, each with its
// environment variable; main loads .env into the environment first, so a
// flag beats the environment, which beats the file, which beats the default.
func configFlags() []cli.Flag {
	settings := config.Settings()
	out := make([]cli.Flag, 0, len(settings))
	for _, s := range settings {
		out = append(out, &cli.StringFlag{
			Name: s.Name, EnvVars: []string{s.Env}, Value: s.Default, Usage: s.Usage,
			Category: "Connections and topics",
		})
	}
	return out
}

// readConfig reads the shared flags from a command's context and checks
// them; an error is bad input (exit code 2).
func readConfig(c *cli.Context) (*config.Config, error) {
	cfg, err := config.Parse(c.String)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return cfg, nil
}
