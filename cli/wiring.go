package main

import (
	"log/slog"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/runwatch"
	"github.com/shopstream/shopstream/internal/telemetry"
)

// logFlag is shared by the long-running commands.
var logFlag = &cli.StringFlag{Name: "log-level", EnvVars: []string{"LOG_LEVEL"}, Value: "info", Usage: "debug, info, warn or error"}

func withFlags(extra ...cli.Flag) []cli.Flag { return append(configFlags(), extra...) }

// setup reads the configuration and the command's logger.
func setup(c *cli.Context) (*config.Config, *slog.Logger, error) {
	cfg, err := readConfig(c)
	if err != nil {
		return nil, nil, err
	}
	logger, err := commandLogger(c)
	if err != nil {
		return nil, nil, err
	}
	return cfg, logger, nil
}

// connect reads the configuration and connects to what the command needs.
func connect(c *cli.Context, needs process.Needs) (*process.Env, error) {
	cfg, logger, err := setup(c)
	if err != nil {
		return nil, err
	}
	return process.Connect(c.Context, cfg, logger, telemetry.NewRegistry(), needs)
}

// withEnv is the action that connects to what needs names and runs do.
func withEnv(needs process.Needs, do func(c *cli.Context, e *process.Env) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		e, err := connect(c, needs)
		if err != nil {
			return err
		}
		defer e.Close()
		return do(c, e)
	}
}

// jobCommands are the status and cancel subcommands of a one-at-a-time
// workflow: noun names it in their usage, kept what stays once it stopped.
func jobCommands[P, R any](job runwatch.Job[P, R], noun, kept string) []*cli.Command {
	url := func(e *process.Env) string { return e.Config.WorkflowURL(job.ID, "") }
	return []*cli.Command{
		{
			Name: "status", Usage: "show the running " + noun + "'s progress, or the last one's summary", Flags: withFlags(),
			Action: withEnv(process.NeedTemporal, func(c *cli.Context, e *process.Env) error {
				return job.Show(c.Context, e.Temporal, url(e), c.App.Writer)
			}),
		},
		{
			Name: "cancel", Usage: "stop the running " + noun + "; " + kept + " stay, running ones abort",
			Flags: withFlags(&cli.DurationFlag{Name: "wait", Value: 30 * time.Second, Usage: "how long to wait for the workflow to stop"}),
			Action: withEnv(process.NeedTemporal, func(c *cli.Context, e *process.Env) error {
				return job.Cancel(c.Context, e.Temporal, c.Duration("wait"), c.App.Writer)
			}),
		},
	}
}

// infoByDefault are the commands that log at --log-level's default (info);
// the others log only warnings unless --log-level is given: their output is
// their result.
var infoByDefault = []string{"dev", "worker", "streamer", "recommender", "sink"}

func commandLogger(c *cli.Context) (*slog.Logger, error) {
	level := "warn"
	if c.IsSet("log-level") {
		level = c.String("log-level")
	}
	for _, name := range infoByDefault {
		if c.Command != nil && c.Command.HasName(name) {
			level = c.String("log-level")
		}
	}
	if level == "" {
		level = "info"
	}
	logger, err := telemetry.NewLogger(c.App.ErrWriter, level)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return logger, nil
}
