package main

import (
	"github.com/urfave/cli/v2"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "print the effective configuration (flags > environment > .env > defaults), secrets masked",
		Flags: configFlags(),
		Action: func(c *cli.Context) error {
			cfg, err := readConfig(c)
			if err != nil {
				return err
			}
			return cfg.Describe(c.App.Writer)
		},
	}
}
