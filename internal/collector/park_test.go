package collector_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/collector"
)

// errKilled is what a test's crash hook returns: Run ends at once, as a
// SIGKILL would end the process.
var errKilled = errors.New("collector killed by the test")

// The fault suite's seed 19, made deterministic: the collector dies right
// after a parked product's output commits to Kafka and before its parked
// record is deleted from PostgreSQL. The next instance finds that output
// committed and only forgets the record: one complete product, and its
// state is not collected again.
func TestParkedProductIsEmittedOnceWhenKilledAfterItsCommit(t *testing.T) {
	killParked(t, collector.CrashAfterParkedCommit, true)
}

// The other side of the window: the collector dies after marking a parked
// product's output and before the commit, so the transaction aborts. The
// next instance finds no committed output and collects and emits it: one
// complete product, not none.
func TestParkedProductIsEmittedOnceWhenKilledBeforeItsCommit(t *testing.T) {
	killParked(t, collector.CrashBeforeParkedCommit, false)
}

func killParked(t *testing.T, crashAt func(*collector.Options, func() error), committed bool) {
	killed := make(chan struct{})
	var once sync.Once
	r, gated, open := gatedRig(t, func(c *collector.Options) {
		// Only the first instance dies; the next one runs the same options.
		crashAt(c, func() (err error) {
			once.Do(func() { close(killed); err = errKilled })
			return err
		})
	})
	r.post(product("m1", "gated", "Gated", gated+"/gated.png"))
	// Another mall's product: a mall with a product parked is not waited
	// for, so one of m1 could be parked too.
	r.post(product("m2", "marker", "Marker", r.imageURL("marker")))
	eventually(t, 10*time.Second, "the product after the gated one complete", func() bool { return r.statusOf("m2", "marker") == "complete" })
	if keys := collector.ParkedKeys(t, r.store); !slices.Equal(keys, []string{"m1/gated"}) {
		t.Fatalf("parked %v, want the gated product", keys)
	}
	open()
	select {
	case <-killed:
	case <-time.After(20 * time.Second):
		t.Fatal("the gated product's batch never reached the crash")
	}
	r.stop()

	// The window: the record still parked, its output committed or not.
	if keys := collector.ParkedKeys(t, r.store); !slices.Equal(keys, []string{"m1/gated"}) {
		t.Fatalf("parked %v after the crash, want the gated product still", keys)
	}
	want := 0
	if committed {
		want = 1
	}
	if n := r.completeRecords("m1/gated"); n != want {
		t.Fatalf("%d complete records of the gated product at the crash, want %d", n, want)
	}
	before, err := r.store.Status(context.Background(), "m1", "gated")
	if err != nil || before == nil {
		t.Fatalf("state at the crash: %+v %v", before, err)
	}

	stop := r.startCollector(context.Background())
	defer stop()
	eventually(t, 20*time.Second, "the parked record forgotten", func() bool { return len(collector.ParkedKeys(t, r.store)) == 0 })
	// A second emission would be committed before its record is deleted,
	// so it would be on the topic by now.
	if n := r.completeRecords("m1/gated"); n != 1 {
		t.Fatalf("%d complete records of the gated product, want exactly 1", n)
	}
	after, err := r.store.Status(context.Background(), "m1", "gated")
	if err != nil || after == nil || after.Status != "complete" {
		t.Fatalf("state after the restart: %+v %v", after, err)
	}
	if again := !after.UpdatedAt.Equal(before.UpdatedAt); again == committed {
		t.Fatalf("state written at %s, then %s: collected again %v, want %v", before.UpdatedAt, after.UpdatedAt, again, !committed)
	}
}

// A rebalance moves parked products with their partitions: a second
// instance joins while six products are parked on the first, claims those
// of the partitions it gets and finishes them, while the first drops them.
// Each ends as exactly one complete record.
func TestParkedProductsMoveWithTheirPartitions(t *testing.T) {
	r, gated, open := gatedRig(t, nil)
	const n = 6
	for i := range n {
		r.post(product("g", fmt.Sprintf("p%d", i), "Gated", fmt.Sprintf("%s/g%d.png", gated, i)))
	}
	eventually(t, 20*time.Second, "six products parked", func() bool { return len(collector.ParkedKeys(t, r.store)) == n })
	first := collector.ParkedOwners(t, r.store)["g/p0"]

	stop := r.startCollector(context.Background())
	defer stop()
	eventually(t, 30*time.Second, "the second instance owning some of the parked products", func() bool {
		owners := collector.ParkedOwners(t, r.store)
		moved := 0
		for _, o := range owners {
			if o != first {
				moved++
			}
		}
		return len(owners) == n && moved > 0 && moved < n
	})
	open()
	eventually(t, 30*time.Second, "no product parked", func() bool { return len(collector.ParkedKeys(t, r.store)) == 0 })
	for i := range n {
		key := fmt.Sprintf("g/p%d", i)
		if c := r.completeRecords(key); c != 1 {
			t.Errorf("%s: %d complete records, want 1", key, c)
		}
	}
}
