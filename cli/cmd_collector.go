package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/blobstore"
	"github.com/shopstream/shopstream/internal/catalog"
	"github.com/shopstream/shopstream/internal/collector"
	"github.com/shopstream/shopstream/internal/imagefetch"
	"github.com/shopstream/shopstream/internal/productapi"
	"github.com/shopstream/shopstream/internal/telemetry"
)

// collectorSettings are the collector's own flags.
type collectorSettings struct {
	group string
	txnID string
	fetch imagefetch.Options
}

func collectorFlags() []cli.Flag {
	cat := "Image collection"
	return []cli.Flag{
		&cli.StringFlag{Name: "collector-group", EnvVars: []string{"COLLECTOR_GROUP"}, Value: collector.DefaultGroup, Usage: "consumer group of the collector instances", Category: cat},
		&cli.StringFlag{Name: "collector-transactional-id", EnvVars: []string{"COLLECTOR_TRANSACTIONAL_ID"}, Usage: "this instance's Kafka transactional id, stable across restarts so that a restarted instance aborts its predecessor's open transaction at once (the Helm chart gives the pod name); unique among live instances (default: random)", Category: cat},
		&cli.StringFlag{Name: "fetch-allow-hosts", EnvVars: []string{"IMAGE_FETCH_ALLOW_HOSTS"}, Usage: "comma-separated host or host:port that image URLs may use even though they resolve to loopback or private addresses (e.g. an internal CDN)", Category: cat},
		&cli.DurationFlag{Name: "fetch-timeout", EnvVars: []string{"IMAGE_FETCH_TIMEOUT"}, Value: imagefetch.DefaultTimeout, Usage: "time limit of one image download attempt", Category: cat},
		&cli.IntFlag{Name: "fetch-attempts", EnvVars: []string{"IMAGE_FETCH_ATTEMPTS"}, Value: imagefetch.DefaultAttempts, Usage: "attempts per image for transient failures (timeouts, 5xx)", Category: cat},
		&cli.Int64Flag{Name: "max-image-bytes", EnvVars: []string{"IMAGE_MAX_BYTES"}, Value: imagefetch.DefaultMaxBytes, Usage: "largest image accepted", Category: cat},
		&cli.IntFlag{Name: "fetch-concurrency", EnvVars: []string{"IMAGE_FETCH_CONCURRENCY"}, Value: imagefetch.DefaultConcurrency, Usage: "image downloads in flight at once", Category: cat},
	}
}

func readCollectorSettings(c *cli.Context) (collectorSettings, error) {
	s := collectorSettings{group: c.String("collector-group"), txnID: c.String("collector-transactional-id"), fetch: imagefetch.Options{
		AllowHosts:  splitCSV(c.String("fetch-allow-hosts")),
		Timeout:     c.Duration("fetch-timeout"),
		Attempts:    c.Int("fetch-attempts"),
		MaxBytes:    c.Int64("max-image-bytes"),
		Concurrency: c.Int("fetch-concurrency"),
	}}
	switch {
	case s.group == "":
		return s, usageErr("--collector-group is empty")
	case strings.ContainsAny(s.txnID, " \t\n"):
		return s, usageErr("--collector-transactional-id %q: use no white space", s.txnID)
	case s.fetch.Timeout <= 0:
		return s, usageErr("--fetch-timeout %s: want a positive duration such as 10s", s.fetch.Timeout)
	case s.fetch.Attempts < 1 || s.fetch.Attempts > 20:
		return s, usageErr("--fetch-attempts %d: want 1 to 20", s.fetch.Attempts)
	case s.fetch.MaxBytes < 1:
		return s, usageErr("--max-image-bytes %d: want a positive size", s.fetch.MaxBytes)
	case s.fetch.Concurrency < 1 || s.fetch.Concurrency > 1024:
		return s, usageErr("--fetch-concurrency %d: want 1 to 1024", s.fetch.Concurrency)
	}
	return s, nil
}

func splitCSV(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func collectorCommand() *cli.Command {
	return &cli.Command{
		Name:  "collector",
		Usage: "collect every product's images into blob storage and emit complete products",
		Description: "A consumer group on the product topic. Each product's images are downloaded (never from loopback,\n" +
			"private, link-local or cloud-metadata addresses unless allow-listed), stored under content-addressed\n" +
			"keys in BLOB_URL, and the product is emitted to the complete-product topic once all are stored.\n" +
			"Products whose images cannot be collected go to the dead-letter topic and are reported as failed\n" +
			"(GET /api/v1/products/{productId}). Needs DATABASE_DSN. Stops cleanly on SIGINT/SIGTERM.\n\n" +
			"Example:\n  DATABASE_DSN=postgres://… shopstream collector --fetch-allow-hosts 127.0.0.1:8080",
		Flags: withFlags(append(collectorFlags(), logFlag)...),
		Action: func(c *cli.Context) error {
			s, err := readCollectorSettings(c)
			if err != nil {
				return err
			}
			e, err := connect(c, true, false)
			if err != nil {
				return err
			}
			defer e.close()
			addr, err := telemetry.Serve(c.Context, e.cfg.MetricsAddrFor("collector"), e.metrics, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "collector: consuming %s as group %s; images in %s; /metrics on %s\n",
				e.cfg.Topics.Products, s.group, blobDescription(e.cfg.BlobURL, e.cfg.DataDir), addr)
			return runCollector(c.Context, e, s)
		},
	}
}

func blobDescription(blobURL, dataDir string) string {
	if blobURL == "" {
		return dataDir + "/images"
	}
	return blobURL
}

// runCollector runs the collector over the env's clients until ctx ends.
func runCollector(ctx context.Context, e *env, s collectorSettings) error {
	if e.cfg.DatabaseDSN == "" {
		return errors.New("no PostgreSQL to keep collected products in: set DATABASE_DSN / --database-dsn (shopstream dev starts one when PostgreSQL is installed: make postgres)")
	}
	db, err := e.database(ctx)
	if err != nil {
		return err
	}
	blobs, err := blobstore.Open(ctx, e.cfg.BlobURL, e.cfg.DataDir)
	if err != nil {
		return err
	}
	defer blobs.Close()
	s.fetch.Registerer = e.metrics
	fetcher, err := imagefetch.New(s.fetch)
	if err != nil {
		return err
	}
	defer fetcher.Close()
	col, err := collector.New(collector.Options{
		Kafka:      e.kafkaClients,
		Group:      s.group,
		Topics:     e.cfg.Topics,
		Serde:      e.serde,
		Store:      collector.NewStore(db),
		Blobs:      blobs,
		Fetcher:    fetcher,
		Logger:     e.log.With("component", "collector"),
		Registerer: e.metrics,
		// Empty unless given: collector.New picks a random one.
		TransactionalID: s.txnID,
	})
	if err != nil {
		return err
	}
	return col.Run(ctx)
}

// apiSettings are the API's own flags.
type apiSettings struct {
	addr     string
	maxBody  int64
	noImages bool
}

func apiFlags() []cli.Flag {
	cat := "Product API"
	return []cli.Flag{
		&cli.StringFlag{Name: "api-addr", EnvVars: []string{"API_ADDR"}, Value: productapi.DefaultAddr, Usage: "where the product API listens (it serves /metrics and /healthz there too)", Category: cat},
		&cli.Int64Flag{Name: "max-body-bytes", EnvVars: []string{"API_MAX_BODY_BYTES"}, Value: productapi.DefaultMaxBody, Usage: "largest POST body; larger ones get 413", Category: cat},
		&cli.BoolFlag{Name: "no-image-server", EnvVars: []string{"API_NO_IMAGE_SERVER"}, Usage: "do not serve the generated images at /images/{name}.png", Category: cat},
	}
}

func apiCommand() *cli.Command {
	return &cli.Command{
		Name:  "api",
		Usage: "serve the product API: POST products, read complete products, delete them",
		Description: "POST /api/v1/products queues a product for image collection; GET /api/v1/complete-products\n" +
			"lists the products whose images are all stored; see /api/v1/openapi.json for everything.\n" +
			"Also serves generated test images at /images/{name}.png. Reads need DATABASE_DSN.\n\n" +
			"Example:\n  shopstream api &\n" +
			"  curl -X POST localhost:8080/api/v1/products -d '{\"mallId\":\"m1\",\"productId\":\"p1\",\"title\":\"Mug\",\"price\":\"9.50\",\"imageUrl\":\"http://127.0.0.1:8080/images/mug.png\"}'",
		Flags: withFlags(append(apiFlags(), logFlag)...),
		Action: func(c *cli.Context) error {
			s := apiSettings{addr: c.String("api-addr"), maxBody: c.Int64("max-body-bytes"), noImages: c.Bool("no-image-server")}
			if s.addr == "" || !strings.Contains(s.addr, ":") {
				return usageErr("--api-addr %q: want host:port, e.g. %s", s.addr, productapi.DefaultAddr)
			}
			if s.maxBody < 1 {
				return usageErr("--max-body-bytes %d: want a positive size", s.maxBody)
			}
			e, err := connect(c, true, false)
			if err != nil {
				return err
			}
			defer e.close()
			return runProductAPI(c.Context, e, s, func(addr string) {
				fmt.Fprintf(c.App.Writer, "api: serving http://%s/api/v1/ (OpenAPI at /api/v1/openapi.json, images at /images/, /metrics)\n", addr)
			})
		},
	}
}

// runProductAPI serves the API until ctx ends.
func runProductAPI(ctx context.Context, e *env, s apiSettings, started func(addr string)) error {
	var reader catalog.Reader
	if e.cfg.DatabaseDSN != "" {
		db, err := e.database(ctx)
		if err != nil {
			return err
		}
		reader = collector.NewStore(db)
	} else {
		e.log.Warn("no DATABASE_DSN: the product API accepts products but cannot serve complete products (reads answer 503)")
	}
	api, err := productapi.New(productapi.Options{
		Producer: e.kafka, Serde: e.serde, Topics: e.cfg.Topics, Catalog: reader,
		Registerer: e.metrics, Gatherer: e.metrics, Logger: e.log.With("component", "api"),
		Addr: s.addr, MaxBody: s.maxBody, NoImages: s.noImages,
	})
	if err != nil {
		return err
	}
	go func() {
		select {
		case <-api.Ready():
			if started != nil {
				started(api.Addr())
			}
		case <-ctx.Done():
		}
	}()
	return api.Run(ctx)
}

// devCollector runs the collector inside `shopstream dev`, allowed to fetch
// from the embedded image server.
func devCollector(ctx context.Context, e *env) error {
	if e.cfg.DatabaseDSN == "" {
		e.log.Warn("image collector not started: it needs PostgreSQL; set DATABASE_DSN or install PostgreSQL (make postgres)")
		<-ctx.Done()
		return nil
	}
	host := productapi.DefaultAddr
	_, port, _ := strings.Cut(host, ":")
	return runCollector(ctx, e, collectorSettings{group: collector.DefaultGroup, fetch: imagefetch.Options{
		AllowHosts: []string{host, "localhost:" + port},
	}})
}

func devProductAPI(ctx context.Context, e *env) error {
	return runProductAPI(ctx, e, apiSettings{addr: productapi.DefaultAddr, maxBody: productapi.DefaultMaxBody}, func(addr string) {
		e.log.Info("product API serving", "url", "http://"+addr+"/api/v1/", "images", "http://"+addr+"/images/{name}.png")
	})
}
