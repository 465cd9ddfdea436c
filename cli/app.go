package main

import (
	"io"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/exitcode"
)

// exitUsage is the exit code for bad flags and bad input: nothing was done.
const exitUsage = exitcode.Usage

// usageErr reports bad input: the message says what is wrong and what to do.
func usageErr(format string, a ...any) error { return exitcode.Usagef(format, a...) }

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "shopstream",
		Usage: "an event-streaming pipeline on Kafka, orchestrated by Temporal",
		Description: "Shops publish products into Kafka; the streamer filters them by a substring that an operator\n" +
			"changes at run time through a Temporal signal; search prompts become per-user recommendations;\n" +
			"everything lands in PostgreSQL.\n\n" +
			"Start the embedded stack in one terminal with `shopstream dev`; every other command then works\n" +
			"with no flags. Point at an external stack with the environment variables shown by `shopstream config`.",
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		// run() turns errors into exit codes; urfave must not os.Exit itself.
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			devCommand(),
			bootstrapCommand(),
			emulateCommand(),
			workerCommand(),
			sinkCommand(),
			configCommand(),
			statusCommand(),
			collectorCommand(), apiCommand(), loadtestCommand(),
			streamerCommand(),
			filterCommand(),
			dlqCommand(),
			searchCommand(),
			recsCommand(),
			recommenderCommand(),
			kafkaCommand(),
		},
		// urfave prints its own message for a bad flag; make the exit code 2.
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return usageErr("%v (see `shopstream --help`)", err)
		},
		// Without a command, show the help; with an unknown one, say so.
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageErr("no command %q (see `shopstream --help`)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
	}
	for _, cmd := range app.Commands {
		setUsageErrors(cmd)
	}
	return app
}

func setUsageErrors(cmd *cli.Command) {
	name := cmd.Name
	cmd.OnUsageError = func(c *cli.Context, err error, _ bool) error {
		return usageErr("%s: %v (see `shopstream %s --help`)", name, err, name)
	}
	for _, sub := range cmd.Subcommands {
		setUsageErrors(sub)
	}
}
