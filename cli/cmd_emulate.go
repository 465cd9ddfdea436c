package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/emulation"
	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/shopgen"
	"github.com/shopstream/shopstream/workflows"
)

func emulateCommand() *cli.Command {
	return &cli.Command{
		Name:  "emulate",
		Usage: "publish exactly N products from emulated shops (the EmulateShop Temporal workflow)",
		Description: "Splits N into batches; each batch is an activity that produces its products in one Kafka transaction,\n" +
			"so a consumer reading committed records sees every product once, even when a worker or the broker\n" +
			"dies mid-run. Products are a function of the seed and their index: a retried batch repeats itself.\n" +
			"Shows a progress bar (plain lines when not on a terminal) and ends with a summary.\n\n" +
			"Examples:\n" +
			"  shopstream emulate --count 100000\n" +
			"  shopstream emulate --count 1M --shops 50 --seed 42\n" +
			"  shopstream emulate --count 10k --rate 500 --detach\n" +
			"  shopstream emulate --count 1000 --every 1m      # a Temporal Schedule\n" +
			"  shopstream emulate status shopstream-emulate-20260101-120000-ab12\n" +
			"  shopstream emulate cancel shopstream-emulate-20260101-120000-ab12",
		Flags: withFlags(
			&cli.StringFlag{Name: "count", Aliases: []string{"n"}, Usage: "how many products to publish: 100000, 100_000, 100k, 1M or 1e6 (required)"},
			&cli.Int64Flag{Name: "batch-size", Usage: "products per batch (one activity, one Kafka transaction); 0 picks count/100 within [5000, 50000]"},
			&cli.IntFlag{Name: "shops", Value: workflows.DefaultEmulateShops, Usage: "how many malls the products are spread over"},
			&cli.Uint64Flag{Name: "seed", Usage: "makes the products reproducible across runs; 0 derives it from the workflow id"},
			&cli.Float64Flag{Name: "rate", Usage: "at most this many products a second over the whole run; 0 is as fast as Kafka takes them"},
			&cli.IntFlag{Name: "concurrency", Value: workflows.DefaultEmulateConcurrency, Usage: "batches running at once"},
			&cli.StringFlag{Name: "image-base-url", EnvVars: []string{"IMAGE_BASE_URL"}, Value: shopgen.DefaultImageBaseURL, Usage: "products' image URLs start here (the image collector serves /images/{name}.png)"},
			&cli.StringFlag{Name: "id", Usage: "workflow (or schedule) id; default " + workflows.EmulateWorkflowIDPrefix + "<time>-<random>"},
			&cli.BoolFlag{Name: "detach", Usage: "print the workflow id and return without waiting"},
			&cli.DurationFlag{Name: "every", Usage: "create a Temporal Schedule that runs this emulation at this interval (at least 1s) instead of one run"},
			&cli.DurationFlag{Name: "heartbeat-timeout", Hidden: true, Usage: "how soon a batch whose worker died is retried elsewhere, and a cancel reaches a running batch (default 10s)"},
		),
		Action: runEmulate,
		Subcommands: []*cli.Command{
			{
				Name: "status", Usage: "show an emulation's progress, or its summary once done", ArgsUsage: "WORKFLOW_ID",
				Flags: withFlags(),
				Action: withEmulation("workflow id", func(c *cli.Context, e *process.Env, id string) error {
					return emulation.Status(c.Context, e, id, c.App.Writer)
				}),
			},
			{
				Name: "cancel", Usage: "cancel a running emulation; batches already committed stay, the running ones abort", ArgsUsage: "WORKFLOW_ID",
				Flags: withFlags(&cli.DurationFlag{Name: "wait", Value: 30 * time.Second, Usage: "how long to wait for the workflow to stop"}),
				Action: withEmulation("workflow id", func(c *cli.Context, e *process.Env, id string) error {
					return emulation.Cancel(c.Context, e, id, c.Duration("wait"), c.App.Writer)
				}),
			},
			{
				Name: "schedules", Usage: "list the emulation schedules that `emulate --every` created",
				Flags: withFlags(),
				Action: withEmulation("", func(c *cli.Context, e *process.Env, _ string) error {
					return emulation.Schedules(c.Context, e, c.App.Writer)
				}),
			},
			{
				Name: "unschedule", Usage: "delete an emulation schedule (runs already started go on)", ArgsUsage: "SCHEDULE_ID",
				Flags: withFlags(),
				Action: withEmulation("schedule id", func(c *cli.Context, e *process.Env, id string) error {
					return emulation.Unschedule(c.Context, e, id, c.App.Writer)
				}),
			},
		},
	}
}

// readEmulateFlags checks every flag before anything connects or starts.
func readEmulateFlags(c *cli.Context) (emulation.Request, error) {
	var r emulation.Request
	if c.NArg() > 0 {
		return r, usageErr("emulate: unexpected argument %q (subcommands: status, cancel, schedules, unschedule)", c.Args().First())
	}
	if !c.IsSet("count") {
		return r, usageErr("emulate: --count is required, e.g. --count 100000")
	}
	count, err := emulation.ParseCount(c.String("count"))
	if err != nil {
		return r, usageErr("emulate: --count %q: %v", c.String("count"), err)
	}
	r.Input = workflows.EmulateShopInput{
		Count:            count,
		BatchSize:        c.Int64("batch-size"),
		Shops:            c.Int("shops"),
		Seed:             c.Uint64("seed"),
		Rate:             c.Float64("rate"),
		Concurrency:      c.Int("concurrency"),
		ImageBaseURL:     c.String("image-base-url"),
		HeartbeatTimeout: c.Duration("heartbeat-timeout"),
	}
	r.Every, r.Detach, r.ID = c.Duration("every"), c.Bool("detach"), c.String("id")
	if err := r.Check(); err != nil {
		return r, err
	}
	if c.IsSet("every") && r.Every < time.Second {
		return r, usageErr("emulate: --every %s: want an interval of at least 1s, e.g. --every 1m", r.Every)
	}
	if r.ID == "" {
		r.ID = emulation.NewID(r.Every > 0, time.Now())
	}
	return r, nil
}

func runEmulate(c *cli.Context) error {
	r, err := readEmulateFlags(c)
	if err != nil {
		return err
	}
	cfg, err := readConfig(c)
	if err != nil {
		return err
	}
	r.Input.Topic = cfg.Topics.Products
	if err := r.Input.Validate(); err != nil {
		return usageErr("emulate: %v", err)
	}
	e, err := connect(c, process.NeedKafka|process.NeedTemporal)
	if err != nil {
		return err
	}
	defer e.Close()
	return emulation.Start(c.Context, e, r, c.App.Writer, isTerminal(c.App.Writer))
}

func oneID(c *cli.Context, what string) (string, error) {
	if c.NArg() != 1 || c.Args().First() == "" {
		return "", usageErr("emulate %s: want exactly one %s, e.g. `shopstream emulate %s %sexample`", c.Command.Name, what, c.Command.Name, workflows.EmulateWorkflowIDPrefix)
	}
	return c.Args().First(), nil
}

// withEmulation runs do with the workflow or schedule id argument (what
// names it; none when empty) over a Temporal connection.
func withEmulation(what string, do func(c *cli.Context, e *process.Env, id string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		var id string
		if what != "" {
			var err error
			if id, err = oneID(c, what); err != nil {
				return err
			}
		}
		return withEnv(process.NeedTemporal, func(c *cli.Context, e *process.Env) error { return do(c, e, id) })(c)
	}
}
