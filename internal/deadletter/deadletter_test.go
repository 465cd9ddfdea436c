package deadletter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
)

func TestRecordKeepsTheOriginalAndSaysWhy(t *testing.T) {
	orig := &kgo.Record{Topic: "shop_products", Partition: 3, Offset: 42, Key: []byte("m/p"), Value: []byte{9, 9},
		Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t1")}}}
	at := time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)
	d := Record("dlq", orig, Why{Component: "streamer", Instance: "i-1", Reason: "malformed", Detail: "unexpected EOF"}, at)
	if d.Topic != "dlq" || !bytes.Equal(d.Key, orig.Key) || !bytes.Equal(d.Value, orig.Value) {
		t.Fatalf("dead letter changed the record: %+v", d)
	}
	got := map[string]string{}
	for _, h := range d.Headers {
		got[h.Key] = string(h.Value)
	}
	for k, want := range map[string]string{
		"trace": "t1", HeaderReason: "malformed", HeaderError: "unexpected EOF", HeaderComponent: "streamer",
		HeaderInstance: "i-1", HeaderSourceTopic: "shop_products", HeaderSourcePartition: "3",
		HeaderSourceOffset: "42", HeaderTime: "2026-11-22T01:02:03Z",
	} {
		if got[k] != want {
			t.Errorf("header %s = %q, want %q", k, got[k], want)
		}
	}
	if len(orig.Headers) != 1 {
		t.Errorf("the original record's headers were changed: %v", orig.Headers)
	}
}

func TestReasonOfClassifiesDecodeErrors(t *testing.T) {
	for i, c := range []struct {
		err  error
		want string
	}{
		{records.ErrNotFramed, ReasonNotFramed},
		{fmt.Errorf("decode m/1: %w", records.ErrUnknownSchemaID), ReasonUnknownSchemaID},
		{fmt.Errorf("schema id 3: %w: a string, not a record", records.ErrWrongSchema), ReasonWrongSchema},
		{fmt.Errorf("%w: the value ends inside a field", records.ErrMalformed), ReasonMalformed},
		// Not the record's fault: retry, do not dead-letter.
		{errors.New("get schema 7: connection refused"), ""},
		{context.Canceled, ""},
		{nil, ""},
	} {
		if got := ReasonOf(c.err); got != c.want {
			t.Errorf("#%d ReasonOf(%v) = %q, want %q", i, c.err, got, c.want)
		}
	}
}

func TestVocabularyNamesEveryReasonOnce(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range Vocabulary() {
		if seen[m.Reason] || m.Means == "" || strings.ContainsAny(m.Reason, "_ ") {
			t.Errorf("reason %q: listed twice, unexplained, or not spelled like the others", m.Reason)
		}
		seen[m.Reason] = true
	}
	for _, r := range []string{ReasonNotFramed, ReasonUnknownSchemaID, ReasonWrongSchema, ReasonMalformed, ReasonNoKey,
		ReasonKeyMismatch, ReasonEmptyUser, ReasonEmptyQuery, ReasonQueryTooLong, ReasonUserTooLong, ReasonInvalid, ReasonRefused, ReasonImagesFailed} {
		if !seen[r] {
			t.Errorf("reason %q is not in the vocabulary that `dlq list --help` shows", r)
		}
	}
}

// Dead letters of several components, one without a detail, read back
// newest last, each explained.
func TestReadExplainsEveryComponentsLetters(t *testing.T) {
	kc := kafkatest.Start(t)
	kc.CreateTopic(2, nil, "dlq")
	cl := kc.Client()
	ctx := context.Background()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	src := func(topic string, off int64) *kgo.Record {
		return &kgo.Record{Topic: topic, Partition: 1, Offset: off, Key: []byte("k"), Value: []byte("v")}
	}
	sent := []*kgo.Record{
		Record("dlq", src("shop_products", 7), Why{Component: "streamer", Instance: "i-1", Reason: ReasonNotFramed, Detail: "no magic byte"}, at),
		Record("dlq", src("analytic_products_find", 8), Why{Component: "recommender", Reason: ReasonEmptyQuery, Detail: "the prompt's query is empty"}, at.Add(time.Second)),
		Record("dlq", src("shop_products", 9), Why{Component: "sink", Reason: ReasonRefused, Detail: "check constraint"}, at.Add(2*time.Second)),
		Record("dlq", src("shop_products", 10), Why{Component: "collector", Reason: ReasonImagesFailed}, at.Add(3*time.Second)),
	}
	if err := cl.ProduceSync(ctx, sent...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got, err := Read(ctx, kc.Kafka, "dlq", 3)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, d := range got {
		lines = append(lines, fmt.Sprintf("%s %s %s %s/%d@%d %q %s", d.Time.Format(time.TimeOnly), d.Component, d.Reason,
			d.SourceTopic, d.SourcePartition, d.SourceOffset, d.Error, d.Key))
	}
	want := []string{
		`03:04:06 recommender empty-query analytic_products_find/1@8 "the prompt's query is empty" k`,
		`03:04:07 sink refused shop_products/1@9 "check constraint" k`,
		`03:04:08 collector images-failed shop_products/1@10 "" k`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("read:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// A detail from outside (a status line with a NUL, bytes that are not
// UTF-8, a multi-line trace) reaches the header cleaned.
func TestDetailIsCleaned(t *testing.T) {
	for i, c := range []struct{ in, want string }{
		{"server answered 404 Not\x00Found", "server answered 404 Not\uFFFDFound"},
		{"bad \xff\xfe bytes", "bad \uFFFD bytes"}, // a run of bad bytes is one U+FFFD
		{"line one\nline two\ttab", "line one line two tab"},
		{"bell\x07 and \x1b[31mcolour", "bell\uFFFD and \uFFFD[31mcolour"},
		{"c1 \u0085 control", "c1 \uFFFD control"},
		{"plain", "plain"},
	} {
		d := Record("dlq", &kgo.Record{}, Why{Reason: ReasonImagesFailed, Detail: c.in}, time.Now())
		if got := Parse(d).Error; got != c.want {
			t.Errorf("#%d: %q became %q, want %q", i, c.in, got, c.want)
		}
	}
	long := Clean(strings.Repeat("é", MaxDetail))
	if len(long) > MaxDetail+len("…") || !strings.HasSuffix(long, "…") || !utf8.ValidString(long) {
		t.Errorf("a long detail is %d bytes, ends %q", len(long), long[len(long)-8:])
	}
}

// A replayed record that fails again is a dead letter that says how often
// it was replayed; replaying it counts once more and keeps only the
// original headers.
func TestReplayCountsAcrossFailures(t *testing.T) {
	orig := &kgo.Record{Topic: "shop_products", Partition: 1, Offset: 7, Key: []byte("m/p"), Value: []byte{0, 0, 0, 0, 9},
		Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t1")}}}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	first := Parse(Record("dlq", orig, Why{Component: "streamer", Reason: ReasonUnknownSchemaID}, at))
	if first.Replays != 0 {
		t.Fatalf("a first failure says %d replays", first.Replays)
	}
	again := first.Replay()
	if again.Topic != "shop_products" || string(again.Key) != "m/p" || !bytes.Equal(again.Value, orig.Value) {
		t.Fatalf("replay %+v does not carry the original record to its source topic", again)
	}
	again.Partition, again.Offset = 1, 99
	second := Parse(Record("dlq", again, Why{Component: "streamer", Reason: ReasonUnknownSchemaID}, at))
	if second.Replays != 1 {
		t.Fatalf("the dead letter of a replayed record says %d replays, want 1", second.Replays)
	}
	third := second.Replay()
	var hdrs []string
	for _, h := range third.Headers {
		hdrs = append(hdrs, h.Key+"="+string(h.Value))
	}
	if strings.Join(hdrs, ",") != "trace=t1,"+HeaderReplays+"=2" {
		t.Fatalf("second replay's headers %v, want the original header and the count 2", hdrs)
	}
}
