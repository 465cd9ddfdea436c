package hanging

import (
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/health"
)

// abort-hanging picks one named transaction, or every hanging one older
// than the bound and every one found only in the log (its age unknown);
// never one that does not hang.
func TestPick(t *testing.T) {
	now := time.Now()
	r := Report{Txns: []Txn{
		{OpenTxn: health.OpenTxn{Topic: "p", Partition: 0, ProducerID: 1, Hanging: true, Started: now.Add(-time.Hour)}, Age: time.Hour},
		{OpenTxn: health.OpenTxn{Topic: "p", Partition: 1, ProducerID: 2, Hanging: true, Started: now.Add(-time.Minute)}, Age: time.Minute},
		{OpenTxn: health.OpenTxn{Topic: "p", Partition: 2, ProducerID: 3, Hanging: true}, Found: FromLog},
		{OpenTxn: health.OpenTxn{Topic: "p", Partition: 3, ProducerID: 4, Started: now.Add(-time.Hour)}, Age: time.Hour},
	}}
	for i, c := range []struct {
		t    Target
		want []int64
	}{
		{Target{OlderThan: 15 * time.Minute}, []int64{1, 3}},
		{Target{}, []int64{1, 2, 3}},
		{Target{One: true, Topic: "p", Partition: 3, ProducerID: 4}, []int64{4}},
		{Target{One: true, Topic: "p", Partition: 3, ProducerID: 1}, nil},
	} {
		var got []int64
		for _, x := range r.Pick(c.t) {
			got = append(got, x.ProducerID)
		}
		if len(got) != len(c.want) {
			t.Errorf("#%d: picked producers %v, want %v", i, got, c.want)
			continue
		}
		for j := range got {
			if got[j] != c.want[j] {
				t.Errorf("#%d: picked producers %v, want %v", i, got, c.want)
				break
			}
		}
	}
}
