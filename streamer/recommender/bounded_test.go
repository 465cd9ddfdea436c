package recommender

import (
	"strings"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/testtool"
)

// An instance that may hold one user forgets the others after every batch
// and reads each back from the recommendations topic when a prompt of it
// comes: the scenario's users see exactly what one unbounded instance
// gives them, whose recommendations build on their earlier ones.
func TestScenarioWithOneUserHeld(t *testing.T) {
	h := newHarness(t)
	h.maxUsers = 1
	s := loadScenario(t)
	in := h.start("one", nil)
	h.run(s, func() []*instance { return []*instance{in} }, nil)
	h.check(s, 1)
	evicted := testtool.MetricValue(t, in.reg, "shopstream_recommender_users_evicted_total")
	recalled := testtool.MetricValue(t, in.reg, "shopstream_recommender_users_recalled_total")
	if held := testtool.MetricValue(t, in.reg, "shopstream_recommender_users"); held > 1 || evicted == 0 || recalled == 0 {
		t.Fatalf("%v users held, %v forgotten, %v read back: want at most 1 held, and some forgotten and read back", held, evicted, recalled)
	}
	in.stop(t)
}

// A user id longer than MaxUserIDBytes is dead-lettered; the next prompt
// is joined.
func TestLongUserIDsAreDeadLettered(t *testing.T) {
	h := newHarness(t)
	in := h.start("one", nil)
	long := strings.Repeat("u", MaxUserIDBytes+1)
	now := time.UnixMilli(1_700_000_000_000).UTC()
	h.writePrompt(long, &records.SearchPrompt{SearchID: "s-long", UserID: long, Query: "phone", SearchedAt: now})
	h.writePrompt("alice", &records.SearchPrompt{SearchID: "s-ok", UserID: "alice", Query: "phone", SearchedAt: now})
	h.waitPromptsJoined()
	var reasons []string
	for _, r := range h.readAll(h.topics.DLQ, true) {
		reasons = append(reasons, header(r, deadletter.HeaderReason))
	}
	if len(reasons) != 1 || reasons[0] != deadletter.ReasonUserTooLong {
		t.Fatalf("dead letters %v, want one %s", reasons, deadletter.ReasonUserTooLong)
	}
	got, _ := h.result()
	if _, ok := got["alice"]; !ok || len(got) != 1 {
		t.Fatalf("recommendations for %d users, want alice's alone", len(got))
	}
	in.stop(t)
}
