package main

import (
	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/collector"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/imagefetch"
	"github.com/shopstream/shopstream/internal/process"
)

func collectorFlags() []cli.Flag {
	cat := "Image collection"
	return []cli.Flag{
		&cli.StringFlag{Name: "collector-group", EnvVars: []string{"COLLECTOR_GROUP"}, Value: collector.DefaultGroup, Usage: "consumer group of the collector instances", Category: cat},
		&cli.StringFlag{Name: "collector-transactional-id", EnvVars: []string{"COLLECTOR_TRANSACTIONAL_ID"}, Usage: "this instance's Kafka transactional id, stable across restarts so that a restarted instance aborts its predecessor's open transaction at once (the Helm chart gives the pod name); unique among live instances (default: random)", Category: cat},
		&cli.StringFlag{Name: "fetch-allow-hosts", EnvVars: []string{"IMAGE_FETCH_ALLOW_HOSTS"}, Usage: "comma-separated host or host:port that image URLs may use even though they resolve to loopback or private addresses (e.g. an internal CDN)", Category: cat},
		&cli.DurationFlag{Name: "fetch-timeout", EnvVars: []string{"IMAGE_FETCH_TIMEOUT"}, Value: imagefetch.DefaultTimeout, Usage: "time limit of one image download attempt", Category: cat},
		&cli.IntFlag{Name: "fetch-attempts", EnvVars: []string{"IMAGE_FETCH_ATTEMPTS"}, Value: imagefetch.DefaultAttempts, Usage: "attempts per image for transient failures (timeouts, 5xx)", Category: cat},
		&cli.Int64Flag{Name: "max-image-bytes", EnvVars: []string{"IMAGE_MAX_BYTES"}, Value: imagefetch.DefaultMaxBytes, Usage: "largest image accepted", Category: cat},
		&cli.IntFlag{Name: "fetch-concurrency", EnvVars: []string{"IMAGE_FETCH_CONCURRENCY"}, Value: imagefetch.DefaultConcurrency, Usage: "image downloads in flight at once; one mall holds at most three quarters of them", Category: cat},
		&cli.IntFlag{Name: "fetch-per-host", EnvVars: []string{"IMAGE_FETCH_PER_HOST"}, Value: imagefetch.DefaultPerHost, Usage: "image downloads in flight at once from one host", Category: cat},
		&cli.DurationFlag{Name: "fetch-connect-timeout", EnvVars: []string{"IMAGE_FETCH_CONNECT_TIMEOUT"}, Value: imagefetch.DefaultConnectTimeout, Usage: "time limit to connect to an image host (TLS included); a host that misses it is not tried again", Category: cat},
		&cli.DurationFlag{Name: "fetch-header-timeout", EnvVars: []string{"IMAGE_FETCH_HEADER_TIMEOUT"}, Value: imagefetch.DefaultHeaderTimeout, Usage: "time limit for an image host's response headers; a host that misses it is not tried again", Category: cat},
		&cli.DurationFlag{Name: "park-after", EnvVars: []string{"COLLECTOR_PARK_AFTER"}, Value: collector.DefaultBatchWait, Usage: "how long a batch waits for its products' images; those still collecting then are parked in PostgreSQL and finish in the background (exactly once, across restarts and rebalances), so a mall whose images hang delays only its own products. 0: never park, a batch waits for all its products", Category: cat},
		&cli.IntFlag{Name: "collector-max-in-flight", EnvVars: []string{"COLLECTOR_MAX_IN_FLIGHT"}, Value: collector.DefaultMaxInFlight, Usage: "products collecting at once, parked ones included; past it the collector reads no more records until some finish", Category: cat},
	}
}

func readCollectorSettings(c *cli.Context) (process.CollectorSettings, error) {
	s := process.CollectorSettings{Group: c.String("collector-group"), TransactionalID: c.String("collector-transactional-id"), ParkAfter: c.Duration("park-after"), MaxInFlight: c.Int("collector-max-in-flight"), Fetch: imagefetch.Options{
		AllowHosts:     config.SplitList(c.String("fetch-allow-hosts")),
		Timeout:        c.Duration("fetch-timeout"),
		Attempts:       c.Int("fetch-attempts"),
		MaxBytes:       c.Int64("max-image-bytes"),
		Concurrency:    c.Int("fetch-concurrency"),
		PerHost:        c.Int("fetch-per-host"),
		ConnectTimeout: c.Duration("fetch-connect-timeout"),
		HeaderTimeout:  c.Duration("fetch-header-timeout"),
	}}
	switch {
	case s.ParkAfter < 0:
		return s, usageErr("--park-after %s: want 0 (never park) or a positive duration such as 2s", s.ParkAfter)
	case s.ParkAfter == 0:
		s.ParkAfter = -1 // the flag's 0 is "never"; the collector's is "the default"
	}
	return s, s.Validate()
}

func collectorCommand() *cli.Command {
	return &cli.Command{
		Name:  "collector",
		Usage: "collect every product's images into blob storage and emit complete products",
		Description: "A consumer group on the product topic. Each product's images are downloaded (never from loopback,\n" +
			"private, link-local or cloud-metadata addresses unless allow-listed), stored under content-addressed\n" +
			"keys in BLOB_URL, and the product is emitted to the complete-product topic once all are stored.\n" +
			"Products whose images cannot be collected go to the dead-letter topic and are reported as failed\n" +
			"(GET /api/v1/products/{productId}). A product still collecting after --park-after is parked in\n" +
			"PostgreSQL and finishes in the background, so one mall's slow image hosts do not hold up the\n" +
			"others; it is emitted exactly once, also across a crash or a rebalance, by whichever instance owns\n" +
			"its partition then. Needs DATABASE_DSN. Stops cleanly on SIGINT/SIGTERM.\n\n" +
			"Example:\n  DATABASE_DSN=postgres://… shopstream collector --fetch-allow-hosts 127.0.0.1:8080",
		Flags: withFlags(append(collectorFlags(), logFlag)...),
		Action: func(c *cli.Context) error {
			s, err := readCollectorSettings(c)
			if err != nil {
				return err
			}
			cfg, logger, err := setup(c)
			if err != nil {
				return err
			}
			return process.RunCollector(c.Context, cfg, logger, s, c.App.Writer)
		},
	}
}
