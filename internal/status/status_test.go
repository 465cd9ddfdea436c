package status

import (
	"strings"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/health"
	"github.com/shopstream/shopstream/internal/records"
)

// One screen: topics, groups sorted with their lag and its change, each
// section, the last runs, and the verdict with every problem listed.
func TestPrintShowsEverySectionAndTheVerdict(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := &Report{
		Topics: []Topic{{Name: "shop_products", Records: 10013, PerSecond: 12.5}},
		Groups: []Group{{Group: "shopstream-streamer", State: "Stable", Members: 1, Lag: 0, LagChange: -3}, {Group: "shopstream-sink", State: "Stable", Members: 1, Lag: 7}},
		Runs:   []Run{{Workflow: "Bootstrap", ID: "shopstream-bootstrap", Status: "Completed", Started: at, URL: "http://ui/b"}},
		Sections: map[string]any{
			"filter": filterSection{Desired: 2, Substring: "phone", SetAt: at, Instances: []health.Instance{
				{AppliedReport: records.AppliedReport{Instance: "eu-1", Version: 2}, State: "applied"}}},
			"sink": sinkSection{Rows: map[string]int64{"products": 10001}, Parked: 13, ParkedOldest: at},
		},
		Problems: []string{"dead-letter topic shop_products_dlq holds 2 records: see `shopstream dlq list`"},
	}
	var b strings.Builder
	Print(&b, r)
	out := b.String()
	for _, want := range []string{
		"shop_products", "10013", "12.5",
		"shopstream-sink", "shopstream-streamer", "-3",
		"FILTER:", `desired v2 "phone"`, "eu-1", "applied",
		"SINK:", "no write yet", "products", "10001 rows",
		"collector parked     13 products whose images are still being fetched (oldest since 2026-01-02T03:04:05Z)",
		"last Bootstrap: Completed (shopstream-bootstrap, started 2026-01-02T03:04:05Z)", "http://ui/b",
		"UNHEALTHY:", "  - dead-letter topic shop_products_dlq holds 2 records",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "shopstream-sink") > strings.Index(out, "shopstream-streamer") {
		t.Errorf("groups are not sorted:\n%s", out)
	}
	b.Reset()
	sinkSection{Rows: map[string]int64{"products": 1}}.print(&b)
	if strings.Contains(b.String(), "parked") {
		t.Errorf("the sink section names parked products when there are none:\n%s", b.String())
	}
	b.Reset()
	Print(&b, &Report{})
	if !strings.HasSuffix(b.String(), "\nhealthy\n") {
		t.Errorf("a report without problems does not end healthy:\n%s", b.String())
	}
}
