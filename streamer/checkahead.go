package streamer

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/records"
)

// The consume loop checks each product (its name read and matched, and the
// rest walked when it passes; see check) before it walks the records in
// order, so that the walk, which every record passes through one at a
// time, only counts a dropped record and forwards one that passes. Where
// the checks run matters more than what they cost: franz-go fetches again
// only once a fetch was polled whole, so the fetching, the loop's work
// and the end of its transactions mostly take turns. Checking records on
// a fetch goroutine, as franz-go buffers them, delays the fetch they come
// in; checking them in the loop delays the batch. Two places cost the
// pipeline little:
//
//   - while a transaction ends, the loop waits for the broker: the records
//     fetched and not polled yet are checked then (checkPending);
//   - what is left when a batch is polled (the first batch of a fetch, that
//     came while the loop waited) is checked split over the cores
//     (checkAhead).
//
// A record no check reached is checked by handle as the loop walks it.

// precheck hands the product records franz-go buffers to the consume loop
// (pendingChecks), on its fetch goroutines, without reading them.
type precheck struct{ s *Streamer }

func (p precheck) OnFetchRecordBuffered(r *kgo.Record) { p.s.pending.add(r) }

// maxPending bounds the records pendingChecks holds; the loop checks those
// it did not take when it polls them.
const maxPending = 1 << 18

// pendingChecks are the records fetched and not checked yet.
type pendingChecks struct {
	mu      sync.Mutex
	records []*kgo.Record // added by the fetch goroutines

	// Owned by the consume loop: the records it took and did not check
	// yet, and stop, which ends a check (checkPending) early.
	backlog []*kgo.Record
	stop    atomic.Bool
}

func (p *pendingChecks) add(r *kgo.Record) {
	p.mu.Lock()
	if len(p.records) < maxPending {
		p.records = append(p.records, r)
	}
	p.mu.Unlock()
}

// take moves the records added since the last take behind the backlog.
func (p *pendingChecks) take() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.backlog) == 0 {
		p.records, p.backlog = p.backlog, p.records
		return
	}
	p.backlog = append(p.backlog, p.records...)
	clear(p.records)
	p.records = p.records[:0]
}

// checkPending checks, on a goroutine of its own, the records fetched and
// not checked yet, oldest first, until the function it returns is called,
// which waits for it. The loop calls it while it waits for a transaction
// to end, and polls only after: no record is checked while the loop reads
// it. With a single processor it does nothing: the check would hold up
// the loop.
func (s *Streamer) checkPending() (wait func()) {
	p := &s.pending
	if runtime.GOMAXPROCS(0) < 2 {
		return func() {}
	}
	p.take()
	if len(p.backlog) == 0 {
		return func() {}
	}
	p.stop.Store(false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := p.backlog
		i := 0
		for ; i < len(b) && !p.stop.Load(); i++ {
			s.checkFetched(b[i])
		}
		// The rest waits for the next transaction's end.
		n := copy(b, b[i:])
		clear(b[n:])
		p.backlog = b[:n]
	}()
	return func() {
		p.stop.Store(true)
		<-done
	}
}

// Bounds of checkAhead: it splits a poll into at most maxAheadParts parts
// of at least minAheadPart records (fewer are not worth a goroutine).
const (
	maxAheadParts = 4
	minAheadPart  = 1000
)

// checkAhead checks the polled records that no check reached yet, split
// over the cores, before the loop walks them. The fetch goroutines are
// idle meanwhile: franz-go fetches again once a fetch is polled whole.
func (s *Streamer) checkAhead(fs kgo.Fetches) {
	parts := min(runtime.GOMAXPROCS(0), maxAheadParts, fs.NumRecords()/minAheadPart)
	if parts < 2 {
		return // the loop checks them as it walks them
	}
	s.ahead = s.ahead[:0]
	fs.EachPartition(func(p kgo.FetchTopicPartition) { s.ahead = append(s.ahead, p.Records...) })
	per := (len(s.ahead) + parts - 1) / parts
	var wg sync.WaitGroup
	for rest := s.ahead[per:]; len(rest) > 0; rest = rest[min(per, len(rest)):] {
		part := rest[:min(per, len(rest))]
		wg.Go(func() {
			for _, r := range part {
				s.checkFetched(r)
			}
		})
	}
	for _, r := range s.ahead[:per] {
		s.checkFetched(r)
	}
	wg.Wait()
	clear(s.ahead) // the records are franz-go's to drop
}

// checkFetched checks a fetched product value: it reads the name, matches
// it with the filter in force and walks the rest of a value that passes
// (checkBody), and marks the record with the outcome. Any goroutine may
// call it, one at a time for a record. A value it cannot check at once (a
// schema id not looked up yet, or any fault) is left to the loop, which
// reports it.
func (s *Streamer) checkFetched(r *kgo.Record) {
	// A Context franz-go set (record pools) is left alone, and so is a
	// record checked already.
	if r.Context != nil || r.Key == nil || r.Value == nil || r.Topic != s.cfg.Topics.Products {
		return
	}
	id, body, err := records.SplitHeader(r.Value)
	if err != nil {
		return
	}
	lay := s.layouts.ready(id)
	c := s.control.Load()
	if lay == nil || c == nil {
		return
	}
	f := c.current.Load()
	if pass, err := checkBody(lay, body, f); err == nil {
		r.Context = f.marks[b2i(pass)]
	}
}
