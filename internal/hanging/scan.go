package hanging

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/health"
)

// scanIdle ends a scan that has received nothing for that long.
const scanIdle = 3 * time.Second

// run is one producer's transactional records since its last marker.
type run struct {
	epoch       int16
	first, last int64
}

// partitionLog follows one partition's log: the transactions still
// without a marker, and those that a later epoch of their producer
// overtook without one.
type partitionLog struct {
	open     map[int64]*run
	followed []Txn
}

func (l *partitionLog) add(topic string, r *kgo.Record) {
	pid := r.ProducerID
	if r.Attrs.IsControl() {
		delete(l.open, pid) // a commit or abort marker ends the producer's transaction
		return
	}
	if !r.Attrs.IsTransactional() {
		return
	}
	o := l.open[pid]
	if o != nil && r.ProducerEpoch != o.epoch {
		// The producer came back with a new epoch and wrote on with no
		// marker between: the earlier transaction was never ended here.
		l.followed = append(l.followed, Txn{LastOffset: o.last, Found: FromLog, Followed: true, OpenTxn: health.OpenTxn{
			Topic: topic, Partition: r.Partition, ProducerID: pid, ProducerEpoch: o.epoch, FirstOffset: o.first, Hanging: true,
			Reason: fmt.Sprintf("its records at offsets %d-%d have no marker, and the producer wrote on from offset %d with epoch %d: "+
				"read_committed readers that start before offset %d skip that producer's later records", o.first, o.last, r.Offset, r.ProducerEpoch, o.first)}})
		o = nil
	}
	if o == nil {
		l.open[pid] = &run{epoch: r.ProducerEpoch, first: r.Offset, last: r.Offset}
		return
	}
	o.last = r.Offset
}

// scan reads every partition of topics from its start to its end, with
// read_uncommitted and the markers kept, and returns the transactions that
// have records but no marker and that no broker holds open (live lists
// those the brokers describe). n is the number of partitions read.
func scan(ctx context.Context, k *clients.Kafka, adm *kadm.Client, topics []string, live []health.OpenTxn) (torn []Txn, n int, err error) {
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, 0, fmt.Errorf("list the start offsets of %s: %w", strings.Join(topics, ", "), err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, 0, fmt.Errorf("list the end offsets of %s: %w", strings.Join(topics, ", "), err)
	}
	stable, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, 0, fmt.Errorf("list the last stable offsets of %s: %w", strings.Join(topics, ", "), err)
	}
	type tp struct {
		topic     string
		partition int32
	}
	end := map[tp]int64{}
	from := map[string]map[int32]kgo.Offset{}
	ends.Each(func(e kadm.ListedOffset) {
		s, ok := starts.Lookup(e.Topic, e.Partition)
		if e.Err != nil || !ok || s.Err != nil {
			return
		}
		n++
		if s.Offset >= e.Offset {
			return // empty
		}
		end[tp{e.Topic, e.Partition}] = e.Offset
		if from[e.Topic] == nil {
			from[e.Topic] = map[int32]kgo.Offset{}
		}
		from[e.Topic][e.Partition] = kgo.NewOffset().At(s.Offset)
	})
	if len(end) == 0 {
		return nil, n, nil
	}
	cl, err := k.NewClient(kgo.ConsumePartitions(from), kgo.FetchIsolationLevel(kgo.ReadUncommitted()), kgo.KeepControlRecords())
	if err != nil {
		return nil, n, fmt.Errorf("read the logs of %s: %w", strings.Join(topics, ", "), err)
	}
	defer cl.Close()
	logs := map[tp]*partitionLog{}
	left := len(end)
	idleSince := time.Now()
	for left > 0 {
		pctx, cancel := context.WithTimeout(ctx, scanIdle/4)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, n, fmt.Errorf("read the logs of %s (%d partitions not read to their end): %w", strings.Join(topics, ", "), left, err)
		}
		if fs.NumRecords() > 0 {
			idleSince = time.Now()
		} else if time.Since(idleSince) > scanIdle {
			// Compaction can remove a partition's last offsets: nothing
			// more will come.
			break
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				ferr = fmt.Errorf("read %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return nil, n, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			at := tp{r.Topic, r.Partition}
			e, ok := end[at]
			if !ok || r.Offset >= e {
				return
			}
			l := logs[at]
			if l == nil {
				l = &partitionLog{open: map[int64]*run{}}
				logs[at] = l
			}
			l.add(r.Topic, r)
			if r.Offset == e-1 {
				left--
				delete(end, at)
			}
		})
	}
	for at, l := range logs {
		torn = append(torn, l.followed...)
		o, _ := stable.Lookup(at.topic, at.partition)
		e, _ := ends.Lookup(at.topic, at.partition)
		for pid, r := range l.open {
			if heldOpen(live, at.topic, at.partition, pid, r.first) {
				continue // the brokers know it: Find reports it from them
			}
			torn = append(torn, Txn{LastOffset: r.last, Found: FromLog, OpenTxn: health.OpenTxn{
				Topic: at.topic, Partition: at.partition, ProducerID: pid, ProducerEpoch: r.epoch, FirstOffset: r.first,
				Offsets: health.Offsets{Stable: o.Offset, End: e.Offset}, Hanging: true,
				Reason: fmt.Sprintf("its records at offsets %d-%d have no commit or abort marker and no broker holds the transaction open "+
					"(a broker that restarted after a crash forgot it): read_committed readers skip the producer's later records until its abort marker", r.first, r.last)}})
		}
	}
	for i := range torn {
		if torn[i].Followed {
			o, _ := stable.Lookup(torn[i].Topic, torn[i].Partition)
			e, _ := ends.Lookup(torn[i].Topic, torn[i].Partition)
			torn[i].Stable, torn[i].End = o.Offset, e.Offset
		}
	}
	return torn, n, nil
}

func heldOpen(live []health.OpenTxn, topic string, partition int32, pid, first int64) bool {
	for _, t := range live {
		if t.Topic == topic && t.Partition == partition && t.ProducerID == pid && t.FirstOffset <= first {
			return true
		}
	}
	return false
}
