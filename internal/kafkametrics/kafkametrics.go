// Package kafkametrics exports what Kafka itself says about shopstream's
// topics, read at each scrape with kadm: every partition's start and end
// offsets, and the lag of every consumer group that committed offsets on
// them (shopstream's own groups, Kafka Connect's sink connectors, ksqlDB's
// queries). Lag measured by an observer keeps growing when a consumer hangs
// or dies, which a consumer's own report cannot show. The lag is
// health.GroupLag's, the one `shopstream status` shows: records still to
// read, not the transaction markers an exactly-once consumer never commits
// past (an autoscaler reads this gauge).
//
// It also watches every partition's last stable offset: how long it has
// stayed behind the end without moving (read_committed consumers stop
// there, and their lag, measured against it, says 0), and, once it has,
// which transaction holds it and whether that transaction hangs
// (health.Kafka.Transactions).
package kafkametrics

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/health"
	"github.com/shopstream/shopstream/internal/records"
)

// DefaultTimeout bounds the Kafka requests of one scrape.
const DefaultTimeout = 5 * time.Second

// Options configures a Collector.
type Options struct {
	Admin *kadm.Client
	// Kafka makes the client of the short read that tells records from
	// transaction markers.
	Kafka *clients.Kafka
	// Topics maps each topic to watch to its role in the pipeline
	// (products, filtered, dlq, …), exported as the role label so that
	// dashboards and alerts do not depend on configured topic names.
	Topics map[string]string
	// SkipGroup, when set, leaves out groups that are not consumers, such
	// as the emulation's per-batch commit markers (offsets committed by a
	// transaction, never read), whose lag would mean nothing.
	SkipGroup func(group string) bool
	// Timeout bounds one scrape's requests (DefaultTimeout when zero).
	Timeout time.Duration
	Log     *slog.Logger
	// Now is the clock the stuck time is measured with (time.Now when nil).
	Now func() time.Time
}

// Collector is a prometheus.Collector; register it once per process.
type Collector struct {
	o Options

	start, end, lag, errs *prometheus.Desc
	stuck, hanging        *prometheus.Desc
	errors                atomic.Int64
	busy                  atomic.Bool // a scrape's requests are running

	// held remembers, for each partition whose last stable offset is
	// behind its end, that offset and since when it has not moved.
	mu   sync.Mutex
	held map[partitionKey]heldAt
}

type partitionKey struct {
	topic     string
	partition int32
}

type heldAt struct {
	stable int64
	since  time.Time
}

// New builds a Collector.
func New(o Options) (*Collector, error) {
	if o.Admin == nil || o.Kafka == nil || len(o.Topics) == 0 {
		return nil, errors.New("kafka metrics need an admin client, the Kafka clients and the topics to watch")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Collector{
		o: o, held: map[partitionKey]heldAt{},
		start: prometheus.NewDesc("shopstream_kafka_partition_start_offset",
			"First offset still held in a partition (records before it were deleted or compacted away).",
			[]string{"topic", "role", "partition"}, nil),
		end: prometheus.NewDesc("shopstream_kafka_partition_end_offset",
			"Offset the next record written to a partition will get; its rate is the partition's write rate (transaction markers take offsets too).",
			[]string{"topic", "role", "partition"}, nil),
		lag: prometheus.NewDesc("shopstream_kafka_consumer_lag_records",
			"Records a consumer group has still to read in a partition: the committed records between its committed offset and the last stable offset (transaction markers and aborted records do not count).",
			[]string{"group", "topic", "role", "partition"}, nil),
		stuck: prometheus.NewDesc("shopstream_kafka_partition_stuck_seconds",
			"How long a partition's last stable offset has stayed at the same offset behind its end (0 when it is at the end or moving): read_committed consumers stop there. Longer than the transaction timeout means a hanging transaction; shopstream kafka hanging names it.",
			[]string{"topic", "role", "partition"}, nil),
		hanging: prometheus.NewDesc("shopstream_kafka_hanging_transaction_seconds",
			"Age of a transaction that holds a partition's last stable offset and that nothing will end by itself (open longer than its timeout, or unknown to its coordinator); shopstream kafka abort-hanging aborts it.",
			[]string{"topic", "role", "partition", "producer_id", "producer_epoch", "transactional_id"}, nil),
		errs: prometheus.NewDesc("shopstream_kafka_scrape_errors_total",
			"Scrapes whose Kafka requests failed or timed out (what was read is still exported).",
			nil, nil),
	}, nil
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.start
	ch <- c.end
	ch <- c.lag
	ch <- c.stuck
	ch <- c.hanging
	ch <- c.errs
}

// Collect implements prometheus.Collector: it asks Kafka now, and gives up
// after the timeout. The requests run apart from the scrape: franz-go does
// not cut a broker's connection handshake short when a request's context
// ends, so a broker that accepts and never answers would otherwise hold
// /metrics for the client's dial timeout. While one scrape's requests
// still hang, the next scrape does not start more.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	var ms []prometheus.Metric
	if c.busy.CompareAndSwap(false, true) {
		type result struct {
			ms     []prometheus.Metric
			failed bool
		}
		done := make(chan result, 1)
		go func() {
			defer c.busy.Store(false)
			ms, failed := c.read()
			done <- result{ms, failed}
		}()
		select {
		case r := <-done:
			ms = r.ms
			if r.failed {
				c.errors.Add(1)
			}
		case <-time.After(c.o.Timeout):
			c.errors.Add(1)
			c.o.Log.Warn("kafka metrics: Kafka did not answer within the scrape timeout", "timeout", c.o.Timeout)
		}
	} else {
		c.errors.Add(1)
	}
	for _, m := range ms {
		ch <- m
	}
	ch <- prometheus.MustNewConstMetric(c.errs, prometheus.CounterValue, float64(c.errors.Load()))
}

// read asks Kafka for the offsets and the lag; failed says that a request
// failed (what was read is returned all the same).
func (c *Collector) read() (out []prometheus.Metric, failed bool) {
	ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	defer cancel()
	topics := make([]string, 0, len(c.o.Topics))
	for t := range c.o.Topics {
		topics = append(topics, t)
	}
	fail := func(what string, err error) {
		failed = true
		c.o.Log.Warn("kafka metrics: "+what, "err", err)
	}

	offsets := func(desc *prometheus.Desc, list func(context.Context, ...string) (kadm.ListedOffsets, error)) kadm.ListedOffsets {
		listed, err := list(ctx, topics...)
		if err != nil {
			fail("list offsets", err)
			return nil
		}
		listed.Each(func(o kadm.ListedOffset) {
			// A topic not created yet (before bootstrap) is no failure.
			if o.Err == nil {
				out = append(out, prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(o.Offset), o.Topic, c.o.Topics[o.Topic], partition(o.Partition)))
			}
		})
		return listed
	}
	offsets(c.start, c.o.Admin.ListStartOffsets)
	ends := offsets(c.end, c.o.Admin.ListEndOffsets)
	out = append(out, c.stable(ctx, topics, ends, fail)...)

	listed, err := c.o.Admin.ListGroups(ctx)
	if err != nil {
		fail("list consumer groups", err)
	}
	var groups []string
	for _, g := range listed.Groups() {
		if c.o.SkipGroup == nil || !c.o.SkipGroup(g) {
			groups = append(groups, g)
		}
	}
	k := health.Kafka{Admin: c.o.Admin, Kafka: c.o.Kafka}
	lags, err := k.Lags(ctx, groups, func(topic string) bool { _, ours := c.o.Topics[topic]; return ours })
	if err != nil {
		// Better no lag than one that counts markers, which would keep an
		// autoscaler scaling a drained pipeline.
		fail("compute consumer lag", err)
		return out, failed
	}
	for _, g := range lags {
		if g.Err != nil {
			fail("compute the lag of group "+g.Group, g.Err)
			continue
		}
		for _, p := range g.Partitions {
			if p.Err != nil || p.Lag < 0 {
				continue
			}
			out = append(out, prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(p.Lag), g.Group, p.Topic, c.o.Topics[p.Topic], partition(p.Partition)))
		}
	}
	return out, failed
}

func partition(p int32) string { return strconv.FormatInt(int64(p), 10) }

// stable exports how long each partition's last stable offset has been
// stuck, and the hanging transactions of the partitions where it is.
func (c *Collector) stable(ctx context.Context, topics []string, ends kadm.ListedOffsets, fail func(string, error)) []prometheus.Metric {
	if ends == nil {
		return nil
	}
	listed, err := c.o.Admin.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		fail("list last stable offsets", err)
		return nil
	}
	now := c.o.Now()
	var out []prometheus.Metric
	stuckTopics := map[string]bool{}
	c.mu.Lock()
	seen := map[partitionKey]bool{}
	ends.Each(func(e kadm.ListedOffset) {
		s, ok := listed.Lookup(e.Topic, e.Partition)
		if e.Err != nil || !ok || s.Err != nil {
			return
		}
		key := partitionKey{e.Topic, e.Partition}
		seen[key] = true
		var stuck time.Duration
		if s.Offset < e.Offset {
			h, was := c.held[key]
			if !was || h.stable != s.Offset {
				h = heldAt{stable: s.Offset, since: now}
				c.held[key] = h
			}
			stuck = now.Sub(h.since)
		} else {
			delete(c.held, key)
		}
		if stuck > 0 {
			stuckTopics[e.Topic] = true
		}
		out = append(out, prometheus.MustNewConstMetric(c.stuck, prometheus.GaugeValue, stuck.Seconds(), e.Topic, c.o.Topics[e.Topic], partition(e.Partition)))
	})
	for key := range c.held {
		if !seen[key] {
			delete(c.held, key) // a topic deleted since
		}
	}
	c.mu.Unlock()
	if len(stuckTopics) == 0 {
		return out
	}
	// Only a partition that stayed put since the last scrape is worth the
	// three requests that name the transaction holding it.
	names := make([]string, 0, len(stuckTopics))
	for t := range stuckTopics {
		names = append(names, t)
	}
	k := health.Kafka{Admin: c.o.Admin, Kafka: c.o.Kafka}
	txns, err := k.Transactions(ctx, names, now)
	if err != nil {
		fail("describe the transactions holding last stable offsets", err)
	}
	for _, t := range txns.Hanging() {
		out = append(out, prometheus.MustNewConstMetric(c.hanging, prometheus.GaugeValue, t.Age(now).Seconds(),
			t.Topic, c.o.Topics[t.Topic], partition(t.Partition),
			strconv.FormatInt(t.ProducerID, 10), strconv.FormatInt(int64(t.ProducerEpoch), 10), t.TransactionalID))
	}
	return out
}

// TopicRoles maps shopstream's configured topics to their roles.
func TopicRoles(t records.Topics) map[string]string {
	roles := map[string]string{}
	for role, topic := range map[string]string{
		"products": t.Products, "complete_products": t.CompleteProducts, "filtered": t.Filtered,
		"find": t.Find, "recommendations": t.Recommendations, "filter": t.Filter,
		"filter_applied": t.FilterApplied, "dlq": t.DLQ,
	} {
		if topic != "" {
			roles[topic] = role
		}
	}
	return roles
}
