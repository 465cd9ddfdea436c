package workflows

import (
	"sync"
	"time"
)

// overlap watches the activities a test stands in for as they run: how
// many ran at once, and the first time two ran in one lane (a partition, a
// slot) that must hold one at a time.
type overlap[K comparable] struct {
	mu          sync.Mutex
	busy        map[K]bool
	clash       string
	inFlight    int
	maxInFlight int
}

// run holds lane for a stand-in activity's 2ms, in real time: the test
// environment runs activities on their own goroutines, so they overlap as
// real ones would. describe says the call when it clashes.
func (o *overlap[K]) run(lane K, describe func() string) {
	o.mu.Lock()
	if o.busy == nil {
		o.busy = map[K]bool{}
	}
	if o.busy[lane] && o.clash == "" {
		o.clash = describe()
	}
	o.busy[lane] = true
	o.inFlight++
	o.maxInFlight = max(o.maxInFlight, o.inFlight)
	o.mu.Unlock()
	time.Sleep(2 * time.Millisecond)
	o.mu.Lock()
	o.inFlight--
	o.busy[lane] = false
	o.mu.Unlock()
}
