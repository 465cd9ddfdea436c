package main

import (
	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/config"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "print the effective configuration (flags > environment > .env > defaults), secrets masked",
		Flags: config.Flags(),
		Action: func(c *cli.Context) error {
			cfg, err := config.FromContext(c)
			if err != nil {
				return usageErr("%v", err)
			}
			return cfg.Describe(c.App.Writer)
		},
	}
}
