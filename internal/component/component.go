// Package component holds what every long-running component of shopstream
// (the streamer, the recommender, the sink, the collector) is built with:
// each Options struct embeds Deps, so the same things have the same names
// everywhere and their defaults are filled in one place.
package component

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/records"
)

// Deps are a component's clients, topics, metrics registry, logger and
// clock.
type Deps struct {
	// Kafka is where every Kafka client of the component connects (seed
	// brokers, dial timeout, TLS, SASL).
	Kafka *clients.Kafka
	// Topics names the pipeline's topics; each component uses its own.
	Topics records.Topics
	// Serde encodes and decodes records through the schema registry.
	Serde *records.Serde
	// Registerer receives the component's metrics; a throwaway registry
	// when nil, so nothing is exported.
	Registerer prometheus.Registerer
	// Logger receives the component's logs; nothing is logged when nil.
	Logger *slog.Logger
	// Now is the component's clock; time.Now when nil.
	Now func() time.Time
}

// Check says what is missing for the component called name (its Kafka
// clients, its serde) and fills in the defaults of the rest.
func (d *Deps) Check(name string) error {
	if d.Kafka == nil {
		return fmt.Errorf("%s: no Kafka clients given", name)
	}
	if d.Serde == nil {
		return fmt.Errorf("%s: no serde (schema registry client) given", name)
	}
	if d.Registerer == nil {
		d.Registerer = prometheus.NewRegistry()
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return nil
}
