package main

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/kafkatest"
)

// A group committed after the last record of a transaction lags by the
// commit marker only: that is caught up. One committed a record earlier
// still has that record to read.
func TestMarkerLagTellsMarkersFromRecords(t *testing.T) {
	ctx := context.Background()
	kc := kafkatest.Start(t)
	adm := kc.Admin()
	kc.CreateTopic(1, nil, "t")
	tx := kc.Client(kgo.TransactionalID("tx"), kgo.DefaultProduceTopic("t"))
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := tx.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	// Records at offsets 0-2, the commit marker at 3, end offset 4.
	commit := func(group string, at int64) {
		var o kadm.Offsets
		o.Add(kadm.Offset{Topic: "t", Partition: 0, At: at, LeaderEpoch: -1})
		if _, err := adm.CommitOffsets(ctx, group, o); err != nil {
			t.Fatal(err)
		}
	}
	commit("caught-up", 3)
	commit("one-behind", 2)
	lags, err := adm.Lag(ctx, "caught-up", "one-behind")
	if err != nil {
		t.Fatal(err)
	}
	got := markerLag(ctx, kc.Kafka, lags)
	if got["caught-up"] != 1 || got["one-behind"] != 1 {
		t.Fatalf("markers %v: want 1 for each group (the one commit marker)", got)
	}
	if raw := lags["one-behind"].Lag.Total(); raw-got["one-behind"] != 1 {
		t.Fatalf("one-behind: raw lag %d less markers %d, want 1 record to read", raw, got["one-behind"])
	}
	if raw := lags["caught-up"].Lag.Total(); raw-got["caught-up"] != 0 {
		t.Fatalf("caught-up: raw lag %d less markers %d, want 0", raw, got["caught-up"])
	}
}
