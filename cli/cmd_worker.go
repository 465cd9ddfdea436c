package main

import (
	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/process"
)

func workerCommand() *cli.Command {
	return &cli.Command{
		Name:        "worker",
		Usage:       "run the Temporal worker that hosts every shopstream workflow and activity",
		Description: "`shopstream dev` runs one inside; run this against an external Temporal.\nStops cleanly on SIGINT/SIGTERM.",
		Flags:       withFlags(logFlag),
		Action: func(c *cli.Context) error {
			cfg, logger, err := setup(c)
			if err != nil {
				return err
			}
			return process.RunWorker(c.Context, cfg, logger, c.App.Writer)
		},
	}
}
