package deadletter

import (
	"strings"
	"testing"
	"time"
)

// `dlq list` shows where a letter came from and the start of its key and
// value: text as text, binary as hex, a missing value as null.
func TestPrintTableShowsWhyAndWhat(t *testing.T) {
	var b strings.Builder
	PrintTable(&b, []Letter{
		{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local), Component: "streamer", Reason: ReasonNotFramed,
			SourceTopic: "shop_products", SourcePartition: 2, SourceOffset: 41, Key: []byte("m1/p1"), Value: []byte{0xff, 0x00, 0x01}, Error: "not framed"},
		{Component: "sink", Reason: ReasonNoKey, SourceTopic: "personal_recom", Key: nil, Value: []byte(strings.Repeat("a", 40))},
	})
	out := b.String()
	for _, want := range []string{
		"2026-01-02 03:04:05.000", "streamer", ReasonNotFramed, "shop_products/2@41", `"m1/p1"`, "3 bytes ff0001", "not framed",
		"personal_recom/0@0", "null", `40 bytes "aaaaaaaaaaaaaaaa…"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(Describe(), ReasonNotFramed) {
		t.Errorf("the description does not list the reason %s", ReasonNotFramed)
	}
}
