package main

import (
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/process"
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
