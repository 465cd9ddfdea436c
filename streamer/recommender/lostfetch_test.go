package recommender

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
)

// Fetch requests the brokers never answer (a lost response, a network
// partition) hold the join only until the request times out: after each
// loss the prompts written meanwhile are joined within a bound, each once,
// and every user sees the product its searches match. The fault suite
// once blamed a 90 s stall of the join on lost fetches (seeds 3 and 30);
// this is the recovery it must show.
func TestJoinRecoversFromLostFetches(t *testing.T) {
	h := newHarness(t, kafkatest.Brokers(3))
	// A request the broker does not answer fails after the fetch's max
	// wait and this overhead; the default 10 s only makes the test slower.
	h.kafka = h.kafka.With(kgo.RequestTimeoutOverhead(time.Second))
	h.writeProducts([]scenarioProduct{{MallID: "m", ProductID: "p1", Name: "Phone Max"}}, true)
	in := h.start("r", nil)

	var lose atomic.Int64 // how many of the next fetches go unanswered
	var lost atomic.Int64
	h.kc.Fake.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		h.kc.Fake.KeepControl()
		if lose.Add(-1) >= 0 {
			lost.Add(1)
			return nil, nil, true // handled, with no answer
		}
		return nil, nil, false
	})
	const users, rounds, perRound = 5, 4, 20
	searches := 0
	at := time.UnixMilli(1_700_000_000_000).UTC()
	for round := range rounds {
		lose.Store(int64(1 + round%3))
		for range perRound {
			u := fmt.Sprintf("user-%d", searches%users)
			h.writePrompt(u, &records.SearchPrompt{SearchID: fmt.Sprint(searches), UserID: u, Query: "PHONE  max", SearchedAt: at.Add(time.Duration(searches) * time.Millisecond)})
			searches++
		}
		t0 := time.Now()
		h.waitPromptsJoined()
		// A lost fetch costs its max wait (1 s) and the overhead; the rest
		// is slack for a loaded machine.
		t.Logf("round %d: %d fetches lost so far, prompts joined %s after the last was written", round, lost.Load(), time.Since(t0).Round(time.Millisecond))
		if d := time.Since(t0); d > 20*time.Second {
			t.Errorf("round %d: the prompts were joined %s after the last was written", round, d.Round(time.Millisecond))
		}
	}
	if lost.Load() == 0 {
		t.Fatal("no fetch went unanswered: the test tested nothing")
	}
	got, n := h.result()
	if n != searches {
		t.Errorf("%d committed recommendations, want exactly %d (one per search)", n, searches)
	}
	if len(got) != users {
		t.Errorf("recommendations for %d users, want %d", len(got), users)
	}
	for u, rec := range got {
		if len(rec.Products) != 1 || rec.Products[0].ProductID != "p1" {
			t.Errorf("%s is recommended %+v, want product p1", u, rec.Products)
		}
	}
	in.stop(t)
}
