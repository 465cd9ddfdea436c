package deadletter

import (
	"bytes"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
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
