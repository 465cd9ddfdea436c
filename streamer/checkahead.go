package streamer

import (
	"runtime"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/records"
)

// The consume loop checks the products of a batch it polled (the name
// read and matched, the rest walked when it passes; see checkBody) before
// it walks the batch in order, split over the cores (checkAhead), so that
// the walk, which every record passes through one at a time, only counts a
// dropped record and forwards one that passes. Where the checks run
// matters more than what they cost: franz-go fetches again only once a
// fetch was polled whole, and runs its buffered-record hooks before a
// fetch can be polled, so checking records in a hook, on the fetch
// goroutine, delayed every fetch by the whole check while the loop waited
// for it. Handing the records over to be checked while a transaction
// ends cost more than it saved on two cores: the handover is a lock per
// record, and the check then took the processor from the broker and the
// producer, which that wait is for.
//
// A record no check reached is checked by handle as the loop walks it.

// Bounds of checkAhead: it splits a poll into at most maxAheadParts parts
// of at least minAheadPart records (fewer are not worth a goroutine).
const (
	maxAheadParts = 4
	minAheadPart  = 1000
)

// checkAhead checks the polled records split over the cores, before the
// loop walks them. The fetch goroutine is idle meanwhile: franz-go fetches
// again once a fetch is polled whole.
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
// schema id not looked up yet, or any fault) is left to handle, which
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
