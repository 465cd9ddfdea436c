package chaos

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/topicread"
)

// position is a record's place in its topic.
type position struct {
	partition int32
	offset    int64
}

// topicLog is one topic as the checker reads it: what a read_committed
// consumer reads, and which offsets belong to aborted transactions (read
// once more with read_uncommitted, the markers kept).
type topicLog struct {
	topic     string
	committed []*kgo.Record
	aborted   map[position]bool
	// open are offsets of transactions with no marker yet: there should
	// be none once the schedule has settled.
	open map[position]bool
	// uncommitted is how many records the read_uncommitted read saw.
	uncommitted int
}

// readTopic reads topic both ways.
func readTopic(ctx context.Context, k *clients.Kafka, adm *kadm.Client, topic string) (*topicLog, error) {
	l := &topicLog{topic: topic, aborted: map[position]bool{}, open: map[position]bool{}}
	err := topicread.Read(ctx, k, topic, topicread.Options{Idle: 3 * time.Second}, func(r *kgo.Record) error {
		l.committed = append(l.committed, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s with read_committed: %w", topic, err)
	}
	if err := l.readUncommitted(ctx, k, adm); err != nil {
		return nil, err
	}
	return l, nil
}

// readUncommitted reads every record and marker up to each partition's
// end and marks the records of aborted transactions.
func (l *topicLog) readUncommitted(ctx context.Context, k *clients.Kafka, adm *kadm.Client) error {
	ends, err := adm.ListEndOffsets(ctx, l.topic)
	if err != nil {
		return fmt.Errorf("list the end offsets of %s: %w", l.topic, err)
	}
	end := map[int32]int64{}
	from := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			end[o.Partition] = o.Offset
			from[o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(end) == 0 {
		return nil
	}
	cl, err := k.NewClient(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{l.topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()), kgo.KeepControlRecords())
	if err != nil {
		return err
	}
	defer cl.Close()
	pending := map[int32]map[int64][]int64{} // partition -> producer -> offsets since its last marker
	idle := time.Now()
	for len(end) > 0 {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				ferr = fmt.Errorf("read %s/%d with read_uncommitted: %w", l.topic, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		if fs.NumRecords() == 0 {
			if time.Since(idle) > 3*time.Second {
				break // compaction removed the last offsets
			}
			continue
		}
		idle = time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			e, ok := end[r.Partition]
			if !ok || r.Offset >= e {
				return
			}
			if pending[r.Partition] == nil {
				pending[r.Partition] = map[int64][]int64{}
			}
			pp := pending[r.Partition]
			switch {
			case r.Attrs.IsControl():
				if len(r.Key) >= 4 && r.Key[3] == 0 { // an abort marker
					for _, off := range pp[r.ProducerID] {
						l.aborted[position{r.Partition, off}] = true
					}
				}
				delete(pp, r.ProducerID)
			case r.Attrs.IsTransactional():
				l.uncommitted++
				pp[r.ProducerID] = append(pp[r.ProducerID], r.Offset)
			default:
				l.uncommitted++
			}
			if r.Offset == e-1 {
				delete(end, r.Partition)
			}
		})
	}
	for p, pp := range pending {
		for _, offs := range pp {
			for _, off := range offs {
				l.open[position{p, off}] = true
			}
		}
	}
	return nil
}

// abortedReads are the records read_committed returned although their
// transaction was aborted, or is still open.
func (l *topicLog) abortedReads() []*kgo.Record {
	var out []*kgo.Record
	for _, r := range l.committed {
		at := position{r.Partition, r.Offset}
		if l.aborted[at] || l.open[at] {
			out = append(out, r)
		}
	}
	return out
}

// latest is each key's last committed record: the topic's table.
func (l *topicLog) latest() map[string]*kgo.Record {
	out := map[string]*kgo.Record{}
	for _, r := range l.committed {
		out[string(r.Key)] = r
	}
	return out
}
