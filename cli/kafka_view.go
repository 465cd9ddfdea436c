package main

import (
	"github.com/shopstream/shopstream/activities"
	"github.com/shopstream/shopstream/internal/kafkametrics"
)

// registerKafkaView exports, on the process's /metrics, what Kafka says
// about shopstream's topics at each scrape: partition offsets and every
// group's lag. The worker (and dev, which hosts one) exports it: the
// observer of the consumers is not one of them.
func registerKafkaView(e *env) error {
	c, err := kafkametrics.New(kafkametrics.Options{
		Admin: e.admin, Kafka: e.kafkaClients, Topics: kafkametrics.TopicRoles(e.cfg.Topics), Log: e.log.With("component", "kafka-metrics"),
		SkipGroup: activities.IsBatchMarkerGroup,
	})
	if err != nil {
		return err
	}
	return e.metrics.Register(c)
}
