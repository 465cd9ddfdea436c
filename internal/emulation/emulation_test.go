package emulation

import "testing"

func TestParseCount(t *testing.T) {
	for i, c := range []struct {
		in   string
		want int64
	}{
		{"100000", 100_000}, {"100_000", 100_000}, {"100k", 100_000}, {"1M", 1_000_000},
		{"2.5M", 2_500_000}, {"1e6", 1_000_000}, {" 7 ", 7},
	} {
		if got, err := ParseCount(c.in); err != nil || got != c.want {
			t.Errorf("#%d: ParseCount(%q) = %d, %v; want %d", i, c.in, got, err, c.want)
		}
	}
	for i, in := range []string{"0", "-1", "1.5", "abc", "", "1e20", "0.5", "1.0001k"} {
		if got, err := ParseCount(in); err == nil {
			t.Errorf("#%d: ParseCount(%q) = %d, want an error", i, in, got)
		}
	}
}
