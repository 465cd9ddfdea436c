package streamer

import (
	"math/rand"
	"strings"
	"testing"

	"golang.org/x/text/cases"
)

func TestMatcher(t *testing.T) {
	for i, c := range []struct {
		substring     string
		caseSensitive bool
		name          string
		want          bool
	}{
		{"", false, "anything", true},
		{"", true, "", true},
		{"phone", false, "Galaxy Phone 12", true},
		{"phone", false, "SMARTPHONE", true},
		{"PHONE", false, "iphone", true},
		{"phone", false, "Galaxy Tab", false},
		{"phone", false, "", false},
		{"phone", false, "phon", false},
		{"phone", true, "Galaxy Phone", false},
		{"Phone", true, "Galaxy Phone", true},
		{"a", false, "A", true},
		// Unicode: folding across scripts, including folds that change the
		// byte length.
		{"телефон", false, "Мобильный ТЕЛЕФОН", true},
		{"ТЕЛЕФОН", false, "мобильный телефон", true},
		{"телефон", true, "ТЕЛЕФОН", false},
		{"σίσυφος", false, "ΣΊΣΥΦΟΣ", true}, // final sigma folds with sigma
		{"ΣΊΣΥΦΟΣ", false, "ο σίσυφος", true},
		{"straße", false, "STRASSE 5", true}, // full folding: ß is ss
		{"STRASSE", false, "Hauptstraße", true},
		{"ss", false, "Maß", true},
		{"k", false, "\u212a", true}, // Kelvin sign
		{"\u212a", false, "kilo", true},
		{"file", false, "\ufb01le cabinet", true}, // the fi ligature
		{"ǆ", false, "ǅemal", true},               // title-case digraph
		{"日本", false, "日本語のテキスト", true},
		{"日本", false, "中国語", false},
		{"🙂", false, "smile 🙂", true},
		{"é", false, "CAFÉ", true},
		{"é", false, "cafe\u0301", false},   // no normalisation: é is not e + combining acute
		{"abc", false, "\xff\xfeABC", true}, // invalid UTF-8 in the name does not stop a match
		{"ü", false, "\xffÜ", true},
	} {
		m := NewMatcher(c.substring, c.caseSensitive)
		if got := m.Match([]byte(c.name)); got != c.want {
			t.Errorf("#%d: %q (case-sensitive %v) in %q = %v, want %v", i, c.substring, c.caseSensitive, c.name, got, c.want)
		}
	}
}

// The matcher agrees with folding both strings and searching, for every pair
// drawn from a mixed corpus.
func TestMatcherAgreesWithFoldAndContains(t *testing.T) {
	corpus := []string{"", "a", "A", "phone", "PHONE", "Phöne", "PHÖNE", "ß", "SS", "ſ", "s", "K", "\u212a", "σ", "ς", "Σ",
		"İ", "i̇", "ı", "I", "ﬃ", "FFI", "телефон", "ТЕЛЕФОН", "日本", "x\xffy", "ǅ", "ǆ", "Ǆ"}
	fold := cases.Fold()
	for _, n := range corpus {
		m := NewMatcher(n, false)
		for _, a := range corpus {
			for _, b := range corpus {
				h := a + b
				want := strings.Contains(fold.String(h), fold.String(n))
				if got := m.Match([]byte(h)); got != want {
					t.Errorf("%q in %q = %v, want %v", n, h, got, want)
				}
			}
		}
	}
}

func TestMatcherAllocatesNothing(t *testing.T) {
	for _, c := range []struct{ substring, name string }{
		{"phone", "Samsung Galaxy Smartphone 256GB black"},
		{"телефон", "Мобильный ТЕЛЕФОН Xiaomi Redmi Note 13, 8/256 ГБ"},
		{"strasse", "Hauptstraße Wohnungsschlüssel"},
	} {
		m := NewMatcher(c.substring, false)
		name := []byte(c.name)
		m.Match(name) // grows the scratch buffer once
		if n := testing.AllocsPerRun(500, func() { m.Match(name) }); n != 0 {
			t.Errorf("%q in %q: %v allocations per match", c.substring, c.name, n)
		}
	}
}

func TestMatcherGrowsForExpandingFolds(t *testing.T) {
	// ß folds to ss and ﬃ to ffi: the folded name is longer than the name.
	name := strings.Repeat("ﬃ", 300) + "phone"
	if !NewMatcher("FFIPHONE", false).Match([]byte(name)) {
		t.Error("no match in a name whose folding triples in length")
	}
}

// An ASCII name is searched in place, eight bytes at a time for the
// needle's first byte: wherever the needle lies (either case, across and at
// the ends of the eight-byte words, in names shorter than a word) the
// answer is that of lowering the name and searching it.
func TestMatcherFindsASCIINeedlesAnywhere(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const alphabet = "pPhHoOnNeE 0@`{[1-"
	random := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.Intn(len(alphabet))]
		}
		return string(b)
	}
	for i := range 20000 {
		needle, name := random(1+rng.Intn(4)), random(rng.Intn(40))
		want := strings.Contains(strings.ToLower(name), strings.ToLower(needle))
		if got := NewMatcher(needle, false).Match([]byte(name)); got != want {
			t.Fatalf("#%d: %q in %q: %v, want %v", i, needle, name, got, want)
		}
	}
}

func BenchmarkMatcher(b *testing.B) {
	for _, c := range []struct{ label, substring, name string }{
		{"ascii", "phone", "Samsung Galaxy Smartphone 256GB black"},
		{"ascii-drop", "phone", "Lenovo ThinkPad X1 Carbon Gen 11, 16 GB"},
		{"ascii-sensitive", "phone", "Samsung Galaxy Smartphone 256GB black"},
		{"unicode", "телефон", "Мобильный ТЕЛЕФОН Xiaomi Redmi Note 13, 8/256 ГБ"},
	} {
		m := NewMatcher(c.substring, c.label == "ascii-sensitive")
		name := []byte(c.name)
		b.Run(c.label, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.Match(name)
			}
		})
	}
}
