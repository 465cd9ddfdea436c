package recommender

import "testing"

func TestNormalize(t *testing.T) {
	for i, c := range []struct{ in, want string }{
		{"", ""},
		{"iphone 15", "iphone 15"},
		{"iPhone 15", "iphone 15"},
		{"  iPhone   15  ", "iphone 15"},
		{"\tGalaxy\n\nPhone\r\n", "galaxy phone"},
		{"a\vb\fc", "a b c"},
		{"   ", ""},
		{"ÉCRAN  Plat", "écran plat"},
		{"écran plat", "écran plat"},
		// Full case folding: ß folds to ss, so the two spellings agree.
		{"Straße", "strasse"},
		{"STRASSE", "strasse"},
		// Greek: final and medial sigma fold alike.
		{"ΟΔΟΣ", "οδοσ"},
		{"οδος", "οδοσ"},
		// Unicode white space: no-break space, ideographic space, NEL.
		{"Galaxy\u00a0Phone", "galaxy phone"},
		{"\u3000Galaxy\u3000\u3000Phone\u0085", "galaxy phone"},
		// Not white space: zero-width space stays.
		{"Galaxy\u200bPhone", "galaxy\u200bphone"},
		{"ＡＢＣ", "ａｂｃ"},
		{"Ǆ", "ǆ"},
	} {
		if got := Normalize(c.in); got != c.want {
			t.Errorf("#%d: Normalize(%q) = %q, want %q", i, c.in, got, c.want)
		}
		// Normalising twice changes nothing.
		if got := Normalize(c.want); got != c.want {
			t.Errorf("#%d: Normalize is not idempotent on %q: %q", i, c.want, got)
		}
	}
}

func TestNormalizeAllocations(t *testing.T) {
	for i, c := range []struct {
		in     string
		allocs float64
	}{
		{"galaxy phone 15", 0},
		{"Galaxy  Phone 15", 1},
	} {
		got := testing.AllocsPerRun(100, func() { _ = Normalize(c.in) })
		if got != c.allocs {
			t.Errorf("#%d: Normalize(%q) allocates %v times, want %v", i, c.in, got, c.allocs)
		}
	}
}
