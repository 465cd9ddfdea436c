package collector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// verdict is what Kafka says about a parked record's marked output.
type verdict int

const (
	// undecided: the transaction that holds the output is still open (its
	// producer may yet commit it, or Kafka abort it on its timeout).
	undecided verdict = iota
	// emitted: the output is committed; the parked record is done.
	emitted
	// notEmitted: the transaction was aborted; the product must be
	// collected and emitted again.
	notEmitted
)

// checkWithin bounds how long one look at the marked outputs waits for
// Kafka; what it cannot decide in that time is looked at again on the next
// resume.
const checkWithin = 3 * time.Second

// emittedOutputs reads each marked output back, read_committed, from its own
// offset, keeping control records. The first record at or after that offset
// decides: the output itself (its offset and key) when its transaction
// committed; anything later (another producer's record, or the abort marker
// that an aborted transaction always leaves behind it) when it did not. An
// output at or past its partition's last stable offset is in a transaction
// still open: undecided, never a guess, and not waited for (the collector's
// loop runs this).
func (c *Collector) emittedOutputs(ctx context.Context, outs []*kgo.Record) (map[*kgo.Record]verdict, error) {
	got := make(map[*kgo.Record]verdict, len(outs))
	if len(outs) == 0 {
		return got, nil
	}
	cl, err := c.o.Kafka.NewClient(
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		// An offset gone from the log must be reported, not silently
		// replaced by another.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
	)
	if err != nil {
		return nil, fmt.Errorf("read back parked products' output: %w", err)
	}
	defer cl.Close()
	var topics []string
	for _, o := range outs {
		if !slices.Contains(topics, o.Topic) {
			topics = append(topics, o.Topic)
		}
	}
	stable, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topics...)
	if err == nil {
		err = stable.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list the last stable offsets of %v: %w", topics, err)
	}
	// One read per partition, from its lowest marked offset that is
	// decided.
	type tp struct {
		topic string
		part  int32
	}
	waiting := map[tp][]*kgo.Record{}
	low := map[tp]int64{}
	for _, o := range outs {
		got[o] = undecided
		if lso, ok := stable.Lookup(o.Topic, o.Partition); !ok || lso.Offset <= o.Offset {
			continue
		}
		k := tp{o.Topic, o.Partition}
		waiting[k] = append(waiting[k], o)
		if l, ok := low[k]; !ok || o.Offset < l {
			low[k] = o.Offset
		}
	}
	if len(waiting) == 0 {
		return got, nil
	}
	from := map[string]map[int32]kgo.Offset{}
	for k, l := range low {
		if from[k.topic] == nil {
			from[k.topic] = map[int32]kgo.Offset{}
		}
		from[k.topic][k.part] = kgo.NewOffset().At(l)
	}
	cl.AddConsumePartitions(from)
	rctx, cancel := context.WithTimeout(ctx, checkWithin)
	defer cancel()
	for len(waiting) > 0 && rctx.Err() == nil {
		fetches := cl.PollFetches(rctx)
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			switch {
			case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			case errors.Is(err, kerr.OffsetOutOfRange):
				// Retention removed the output, so it is days old and
				// nothing says whether it committed; collecting again
				// risks a duplicate of an old product rather than losing
				// one.
				k := tp{t, p}
				for _, o := range waiting[k] {
					got[o] = notEmitted
				}
				delete(waiting, k)
				c.o.Logger.Warn("parked product's output no longer in its topic; collecting it again", "topic", t, "partition", p)
			default:
				ferr = fmt.Errorf("read back parked products' output from %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		fetches.EachRecord(func(r *kgo.Record) {
			k := tp{r.Topic, r.Partition}
			left := waiting[k][:0]
			for _, o := range waiting[k] {
				switch {
				case r.Offset < o.Offset:
					left = append(left, o)
				case r.Offset == o.Offset && !r.Attrs.IsControl() && string(r.Key) == string(o.Key):
					got[o] = emitted
				default:
					got[o] = notEmitted
				}
			}
			if len(left) == 0 {
				delete(waiting, k)
			} else {
				waiting[k] = left
			}
		})
	}
	return got, nil
}
