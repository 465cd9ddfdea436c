package recommender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/records"
)

// loader keeps the table in step with the filtered topic. It reads every
// partition, not through a group, so that every instance holds every
// product (a Kafka Streams global table).
type loader struct {
	cfg   *Config
	table *Table
	admin *kadm.Client
	m     *metrics
	log   *slog.Logger
	cl    *kgo.Client
}

func newLoader(cfg *Config, table *Table, admin *kadm.Client, m *metrics) (*loader, error) {
	cl, err := cfg.Kafka.NewClient(
		kgo.ConsumeTopics(cfg.Topics.Filtered),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// The streamer writes the topic in transactions: aborted products
		// must never enter the table.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Commit markers are kept so that the reader sees its position
		// reach the end offset even when a partition ends with one.
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return nil, fmt.Errorf("create the table's Kafka client: %w", err)
	}
	return &loader{cfg: cfg, table: table, admin: admin, m: m, log: cfg.Logger.With("part", "table"), cl: cl}, nil
}

func (l *loader) close() { l.cl.Close() }

// run reads the filtered topic until ctx ends; caughtUp is closed once every
// partition has been read to the end offset (last stable offset) found at
// start.
func (l *loader) run(ctx context.Context, caughtUp chan<- struct{}) error {
	t0 := time.Now()
	topic := l.cfg.Topics.Filtered
	ends, err := l.admin.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	starts, err := l.admin.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	pending := map[int32]int64{} // partition -> end offset still to reach
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(topic, o.Partition); !ok || o.Offset > s.Offset {
			pending[o.Partition] = o.Offset
		}
	})
	l.log.Info("reading filtered products into the table", "topic", topic, "partitions_to_read", len(pending))
	done := false
	finish := func() {
		if done || len(pending) > 0 {
			return
		}
		done = true
		products, names := l.table.Len()
		l.m.tableCaughtUp.Set(1)
		l.m.catchUp.Set(time.Since(t0).Seconds())
		l.log.Info("table caught up", "products", products, "names", names, "took", time.Since(t0).Round(time.Millisecond))
		if l.cfg.OnCaughtUp != nil {
			l.cfg.OnCaughtUp(products)
		}
		close(caughtUp)
	}
	finish()
	for {
		fetches := l.cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				l.log.Warn("fetch filtered products", "topic", t, "partition", p, "err", err)
			}
		})
		var err error
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if err != nil || len(fp.Records) == 0 {
				return
			}
			for _, r := range fp.Records {
				if err = l.apply(ctx, r); err != nil {
					return
				}
			}
			if end, ok := pending[fp.Partition]; ok && fp.Records[len(fp.Records)-1].Offset+1 >= end {
				delete(pending, fp.Partition)
			}
		})
		if err != nil {
			return err
		}
		products, names := l.table.Len()
		l.m.tableProducts.Set(float64(products))
		l.m.tableNames.Set(float64(names))
		finish()
	}
}

// apply puts one record into the table, or into the dead-letter topic. It
// returns an error only when ctx ends while the registry is unreachable.
func (l *loader) apply(ctx context.Context, r *kgo.Record) error {
	if r.Attrs.IsControl() {
		return nil
	}
	if len(r.Key) == 0 {
		l.deadLetter(r, &badRecord{ReasonMissingKey, errors.New("a filtered product needs the key mall_id/product_id")})
		return nil
	}
	if r.Value == nil {
		l.table.Delete(string(r.Key))
		return nil
	}
	var p records.Product
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		err := classifyDecode(l.cfg.Serde.Decode(ctx, r.Value, &p))
		var bad *badRecord
		switch {
		case err == nil:
		case errors.As(err, &bad):
			l.deadLetter(r, bad)
			return nil
		default:
			// Skipping would lose a product for good: wait for the registry.
			l.log.Warn("decode filtered product; retrying", "partition", r.Partition, "offset", r.Offset, "err", err)
			if err := sleep(ctx, backoff); err != nil {
				return err
			}
			continue
		}
		break
	}
	if key := p.Key(); key != string(r.Key) {
		l.deadLetter(r, &badRecord{ReasonKeyMismatch, fmt.Errorf("record key %q is not the product's mall_id/product_id %q", r.Key, key)})
		return nil
	}
	l.table.Upsert(string(r.Key), &p)
	return nil
}

// deadLetter reports a filtered product that cannot enter the table. Every
// instance reads the whole topic, so each one reports it (and again after a
// restart); the source topic, partition and offset headers identify
// duplicates. The produce is not transactional: the table has no offsets to
// commit with it.
func (l *loader) deadLetter(r *kgo.Record, bad *badRecord) {
	l.m.deadLetters.WithLabelValues("products", bad.reason).Inc()
	l.log.Warn("filtered product to the dead-letter topic", "partition", r.Partition, "offset", r.Offset, "reason", bad.reason, "err", bad.err)
	l.cl.Produce(context.Background(), deadLetter(l.cfg.Topics.DLQ, r, bad, l.cfg.Now()), func(_ *kgo.Record, err error) {
		if err != nil {
			l.log.Error("produce to the dead-letter topic", "topic", l.cfg.Topics.DLQ, "err", err)
		}
	})
}
