package recommender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clock"
	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/freshness"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
	"github.com/shopstream/shopstream/streamer"
)

// loader keeps the table in step with the filtered topic. It reads every
// partition, not through a group, so that every instance holds every
// product (a Kafka Streams global table). The streamer writes the topic in
// transactions; the reader takes only committed products.
type loader struct {
	cfg   *Options
	table *Table
	m     *metrics
	log   *slog.Logger
	rd    *topicread.Reader // opened by run; dead letters are produced on its client
}

func newLoader(cfg *Options, table *Table, m *metrics) *loader {
	return &loader{cfg: cfg, table: table, m: m, log: cfg.Logger.With("part", "table")}
}

func (l *loader) close() {
	if l.rd != nil {
		l.rd.Close()
	}
}

// run reads the filtered topic until ctx ends; caughtUp is closed once every
// partition has been read to the end offset (last stable offset) found at
// start.
func (l *loader) run(ctx context.Context, caughtUp chan<- struct{}) error {
	t0 := time.Now()
	topic := l.cfg.Topics.Filtered
	rd, err := topicread.Open(ctx, l.cfg.Kafka, topic, topicread.Options{
		OnFetchError: func(t string, p int32, err error) error {
			l.log.Warn("fetch filtered products", "topic", t, "partition", p, "err", err)
			return nil
		},
	})
	if err != nil {
		return fmt.Errorf("open the table's reader: %w", err)
	}
	l.rd = rd
	l.log.Info("reading filtered products into the table", "topic", topic, "partitions_to_read", rd.Behind())
	done := false
	finish := func() {
		if done || !rd.CaughtUp() {
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
		recs, err := rd.Poll(ctx)
		if ctx.Err() != nil || errors.Is(err, kgo.ErrClientClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := l.apply(ctx, r); err != nil {
				return err
			}
			// Records read while catching up at start are history; those
			// of a backfill keep the timestamps of the history they copy.
			if done && r.Value != nil && !streamer.Backfilled(r.Headers) {
				freshness.Observe(l.m.freshness, l.cfg.Now(), r.Timestamp)
			}
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
	if len(r.Key) == 0 {
		l.deadLetter(r, &badRecord{deadletter.ReasonNoKey, errors.New("a filtered product needs the key mall_id/product_id")})
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
			if err := clock.Sleep(ctx, backoff); err != nil {
				return err
			}
			continue
		}
		break
	}
	if key := p.Key(); key != string(r.Key) {
		l.deadLetter(r, &badRecord{deadletter.ReasonKeyMismatch, fmt.Errorf("record key %q is not the product's mall_id/product_id %q", r.Key, key)})
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
	l.rd.Client().Produce(context.Background(), deadLetter(l.cfg.Topics.DLQ, r, bad, l.cfg.Now()), func(_ *kgo.Record, err error) {
		if err != nil {
			l.log.Error("produce to the dead-letter topic", "topic", l.cfg.Topics.DLQ, "err", err)
		}
	})
}
