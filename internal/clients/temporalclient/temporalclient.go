// Package temporalclient dials Temporal for shopstream's commands and its
// embedded stack. It lives apart from package clients because the streamer
// builds its Kafka clients through clients and must never link the Temporal
// SDK (DESIGN.md §3: the hot path never waits on Temporal; the layout test
// checks the streamer's dependencies).
package temporalclient

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/shopstream/shopstream/internal/config"
)

// Options say where Temporal is and how to dial it.
type Options struct {
	// HostPort is the frontend's address.
	HostPort string
	// Namespace is "default" when empty.
	Namespace string
	// DialTimeout bounds the dial and the health check (10s).
	DialTimeout time.Duration
	// Logger receives the SDK's logs; nil drops them.
	Logger *slog.Logger
	// MetricsHandler receives the SDK's metrics; nil exports none.
	MetricsHandler client.MetricsHandler
}

// FromConfig are the Options of the configured Temporal.
func FromConfig(cfg *config.Config, logger *slog.Logger) Options {
	return Options{HostPort: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace, DialTimeout: cfg.DialTimeout, Logger: logger}
}

// Dial dials the Temporal frontend and checks that it answers within the
// dial timeout.
func Dial(ctx context.Context, o Options) (client.Client, error) {
	if o.Namespace == "" {
		o.Namespace = client.DefaultNamespace
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	dctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	c, err := client.DialContext(dctx, client.Options{
		HostPort:       o.HostPort,
		Namespace:      o.Namespace,
		Logger:         sdklog.NewStructuredLogger(o.Logger),
		MetricsHandler: o.MetricsHandler,
	})
	if err == nil {
		_, err = c.CheckHealth(dctx, &client.CheckHealthRequest{})
		if err != nil {
			c.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot reach Temporal at %s (namespace %s) within %s (%v): start the embedded stack with `shopstream dev`, or set TEMPORAL_ADDRESS / --temporal-address",
			o.HostPort, o.Namespace, o.DialTimeout, err)
	}
	return c, nil
}
