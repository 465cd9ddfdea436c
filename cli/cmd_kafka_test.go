package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/hanging"
	"github.com/shopstream/shopstream/internal/kafkatest"
)

// What a crash of the embedded Kafka leaves (transactions with records and
// no marker, which no broker remembers) is listed with --scan, named by
// producer, and aborted all at once or one by one.
func TestKafkaHangingListsAndAbortsWhatACrashLeft(t *testing.T) {
	ctx := context.Background()
	before := kafkatest.Start(t, kafkatest.DataDir(t.TempDir()))
	before.CreateTopic(2, nil, "shop_products")
	tx := before.Client(kgo.TransactionalID("emulate-slot-0"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []int32{0, 1} {
		if err := tx.ProduceSync(ctx, &kgo.Record{Topic: "shop_products", Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	pid, _, err := tx.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := kafkatest.Start(t, kafkatest.DataDir(before.Crash()))
	kafka := func(args ...string) (int, string, string) {
		return runApp(t, ctx, append(append([]string{"kafka"}, args...), "--kafka-brokers", strings.Join(after.Brokers, ","))...)
	}

	// The brokers alone know of no open transaction.
	if code, out, errOut := kafka("hanging"); code != 0 || !strings.Contains(out, "no open transaction holds a last stable offset back") {
		t.Fatalf("hanging without --scan: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := kafka("hanging", "--scan")
	abortOne := fmt.Sprintf("abort it: shopstream kafka abort-hanging --topic shop_products --partition 0 --producer-id %d", pid)
	if code != 1 || !strings.Contains(out, abortOne) || !strings.Contains(out, "have no commit or abort marker") {
		t.Fatalf("hanging --scan: exit %d, want 1 and the transaction named with how to abort it\n%s%s", code, out, errOut)
	}
	code, out, _ = kafka("hanging", "--scan", "--json")
	var r hanging.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 1 {
		t.Fatalf("hanging --scan --json: exit %d, %v\n%s", code, err, out)
	}
	if len(r.Hanging()) != 2 || r.Txns[0].ProducerID != pid || r.Txns[0].Found != hanging.FromLog {
		t.Fatalf("JSON lists %+v: want producer %d's transactions on both partitions, found in the log", r.Txns, pid)
	}

	// Bad input starts nothing.
	for _, args := range [][]string{
		{"abort-hanging"},
		{"abort-hanging", "--topic", "shop_products", "--partition", "0"},
		{"abort-hanging", "--older-than", "1m", "--topic", "shop_products", "--partition", "0", "--producer-id", "1"},
	} {
		if code, _, errOut := kafka(args...); code != exitUsage || !strings.Contains(errOut, "--") {
			t.Errorf("%v: exit %d (%s), want %d and what to give", args, code, errOut, exitUsage)
		}
	}

	if code, out, _ := kafka("abort-hanging", "--older-than", "0s", "--scan", "--dry-run"); code != 0 || strings.Count(out, "would abort") != 2 {
		t.Fatalf("--dry-run: exit %d\n%s", code, out)
	}
	code, out, errOut = kafka("abort-hanging", "--topic", "shop_products", "--partition", "0", "--producer-id", fmt.Sprint(pid), "--scan")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("aborted the transaction of producer %d", pid)) || !strings.Contains(out, "on shop_products/0") {
		t.Fatalf("abort one: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := kafka("abort-hanging", "--older-than", "0s", "--scan"); code != 0 || strings.Count(out, "aborted the transaction") != 1 || !strings.Contains(out, "shop_products/1") {
		t.Fatalf("abort the rest: exit %d\n%s", code, out)
	}
	if code, out, _ := kafka("hanging", "--scan"); code != 0 || !strings.Contains(out, "no open transaction") {
		t.Fatalf("after the aborts: exit %d\n%s", code, out)
	}
	code, _, errOut = kafka("abort-hanging", "--topic", "shop_products", "--partition", "0", "--producer-id", fmt.Sprint(pid), "--scan")
	if code != 1 || !strings.Contains(errOut, "has no open transaction on shop_products/0") {
		t.Fatalf("aborting what is not open: exit %d, %s", code, errOut)
	}
}
