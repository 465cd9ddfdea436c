package streamer

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/records"
)

func TestFilterState(t *testing.T) {
	for i, c := range []struct {
		st     records.FilterState
		force  bool
		name   string
		passes bool
		sens   bool
	}{
		{records.FilterState{Version: 3, Substring: "phone"}, false, "PHONE", true, false},
		{records.FilterState{Version: 3, Substring: "phone"}, true, "PHONE", false, true}, // the instance's --case-sensitive wins
		{records.FilterState{Version: 3, Substring: "phone", CaseSensitive: true}, false, "PHONE", false, true},
		{records.FilterState{Version: 4}, true, "anything", true, true}, // cleared
	} {
		f := NewFilter(c.st, c.force)
		if got := f.Match([]byte(c.name)); got != c.passes || f.CaseSensitive != c.sens {
			t.Errorf("#%d: %s on %q = %v (case-sensitive %v), want %v (%v)", i, f, c.name, got, f.CaseSensitive, c.passes, c.sens)
		}
		if v, ok := FilterVersion([]kgo.RecordHeader{{Key: "x"}, f.header}); !ok || v != c.st.Version {
			t.Errorf("#%d: header says v%d %v", i, v, ok)
		}
	}
	if s := NewFilter(records.FilterState{Version: 2, Substring: "tv", CaseSensitive: true}, false).String(); s != `v2: name contains "tv" (case-sensitive)` {
		t.Errorf("String() = %s", s)
	}
}
