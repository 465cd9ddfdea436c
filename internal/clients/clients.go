// Package clients builds the Kafka, schema registry and Temporal clients from
// the configuration, and turns "cannot connect" into an error that names the
// address and says what to do.
package clients

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/records"
)

// Kafka returns a connected client: it pings the brokers within the dial
// timeout, so an unreachable broker is an error now, not a hang later.
func Kafka(ctx context.Context, cfg *config.Config, opts ...kgo.Opt) (*kgo.Client, error) {
	all := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.KafkaBrokers...),
		kgo.DialTimeout(cfg.DialTimeout),
		// A broker that accepts a connection and never answers would
		// otherwise hold the first request for the default 10s overhead.
		kgo.RequestTimeoutOverhead(cfg.DialTimeout),
	}, opts...)
	cl, err := kgo.NewClient(all...)
	if err != nil {
		return nil, fmt.Errorf("create Kafka client for %s: %w", strings.Join(cfg.KafkaBrokers, ","), err)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("cannot reach Kafka at %s within %s (%v): start the embedded stack with `shopstream dev`, or set KAFKA_BROKERS / --kafka-brokers",
			strings.Join(cfg.KafkaBrokers, ","), cfg.DialTimeout, err)
	}
	return cl, nil
}

// Registry returns a schema registry client.
func Registry(cfg *config.Config) (*sr.Client, error) {
	cl, err := sr.NewClient(sr.URLs(cfg.SchemaRegistryURL))
	if err != nil {
		return nil, fmt.Errorf("create schema registry client for %s: %w", config.Mask(cfg.SchemaRegistryURL), err)
	}
	return cl, nil
}

// Serde returns the record serde over a registry client.
func Serde(cfg *config.Config) (*records.Serde, error) {
	schemas, err := records.ParseSchemas()
	if err != nil {
		return nil, err
	}
	reg, err := Registry(cfg)
	if err != nil {
		return nil, err
	}
	return records.NewSerde(schemas, reg), nil
}

// Temporal dials the Temporal frontend and checks that it answers.
func Temporal(ctx context.Context, cfg *config.Config, logger *slog.Logger, opts ...func(*client.Options)) (client.Client, error) {
	o := client.Options{
		HostPort:  cfg.TemporalAddress,
		Namespace: cfg.TemporalNamespace,
		Logger:    sdklog.NewStructuredLogger(logger),
	}
	for _, f := range opts {
		f(&o)
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	c, err := client.DialContext(dctx, o)
	if err == nil {
		_, err = c.CheckHealth(dctx, &client.CheckHealthRequest{})
		if err != nil {
			c.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot reach Temporal at %s (namespace %s) within %s (%v): start the embedded stack with `shopstream dev`, or set TEMPORAL_ADDRESS / --temporal-address",
			cfg.TemporalAddress, cfg.TemporalNamespace, cfg.DialTimeout, err)
	}
	return c, nil
}
