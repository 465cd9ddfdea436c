package hanging

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/shopstream/shopstream/internal/clients"
)

// Recovery is what Recover did.
type Recovery struct {
	// Aborted are the transactions whose abort markers were written.
	Aborted []Txn
	// Left are those it could not abort, with why.
	Left []Result
	// Scanned is the number of partitions whose log was read.
	Scanned int
	// Took is how long the recovery took, the start of the broker it
	// recovered included (its caller sets it).
	Took time.Duration
}

// Lines says what was done, for a person.
func (r Recovery) Lines() []string {
	var out []string
	if len(r.Aborted) == 0 && len(r.Left) == 0 {
		return []string{fmt.Sprintf("found no transaction left open in the %d partitions", r.Scanned)}
	}
	if len(r.Aborted) > 0 {
		out = append(out, fmt.Sprintf("aborted %d transactions left open by the crash (%s), so read_committed readers go past them",
			len(r.Aborted), summarize(r.Aborted)))
	}
	for _, l := range r.Left {
		out = append(out, fmt.Sprintf("could not abort the transaction of producer %d on %s/%d: %v", l.ProducerID, l.Topic, l.Partition, l.Err))
	}
	return out
}

// Print says on w what a start of the embedded stack repaired; nothing
// when r is nil (Kafka had been stopped cleanly).
func (r *Recovery) Print(w io.Writer) {
	if r == nil {
		return
	}
	fmt.Fprintf(w, "shopstream dev: Kafka was not stopped cleanly last time (a crash or SIGKILL); checked it in %s:\n", r.Took.Round(time.Millisecond))
	for _, l := range r.Lines() {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

// summarize names the partitions and producers of txns, shortly.
func summarize(txns []Txn) string {
	byTopic := map[string][]int32{}
	pids := map[int64]bool{}
	for _, t := range txns {
		byTopic[t.Topic] = append(byTopic[t.Topic], t.Partition)
		pids[t.ProducerID] = true
	}
	var topics []string
	for t, ps := range byTopic {
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		var s []string
		for _, p := range ps {
			s = append(s, fmt.Sprint(p))
		}
		topics = append(topics, t+" partitions "+strings.Join(dedupe(s), ","))
	}
	sort.Strings(topics)
	return fmt.Sprintf("%s; %d producers", strings.Join(topics, "; "), len(pids))
}

func dedupe(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// Recover repairs a Kafka whose broker stopped without closing, as kfake
// does after a crash: it reads every topic's log and aborts every
// transaction left open, whether a broker still holds it or only the log
// shows it. After a crash of the whole embedded stack no transaction's
// producer can come back to end it. Run it before any producer connects:
// a marker written after a producer's new records would hide them as well
// (those are reported in Left).
func Recover(ctx context.Context, adm *kadm.Client, k *clients.Kafka) (Recovery, error) {
	r, err := Find(ctx, Options{Admin: adm, Kafka: k, Scan: true})
	if err != nil {
		return Recovery{}, fmt.Errorf("find the transactions a crash left open: %w", err)
	}
	rec := Recovery{Scanned: r.Scanned}
	results, err := Abort(ctx, adm, r.Txns)
	if err != nil {
		return rec, err
	}
	for _, res := range results {
		if res.Err != nil {
			rec.Left = append(rec.Left, res)
		} else {
			rec.Aborted = append(rec.Aborted, res.Txn)
		}
	}
	return rec, nil
}
