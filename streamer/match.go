package streamer

import (
	"bytes"
	"errors"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/transform"
)

// Matcher says whether a name contains a substring. Case-insensitive
// matching uses Unicode full case folding (CaseFolding.txt, C+F), so
// "STRASSE" contains "straße", "ΣΊΣΥΦΟΣ" contains "σίσυφος" and the Kelvin
// sign matches "k". Strings are compared as given: no normalisation (NFC vs
// NFD), no locale rules (the Turkish dotless i).
//
// A Matcher is immutable and safe for concurrent use; matching allocates
// nothing once its scratch buffers have grown to the longest name seen.
type Matcher struct {
	needle        []byte // the substring, folded unless case-sensitive
	caseSensitive bool
	asciiNeedle   bool // the folded needle is all ASCII
	folders       sync.Pool
}

// folder is one goroutine's case-folding state and scratch buffer.
type folder struct {
	caser cases.Caser
	buf   []byte
}

// NewMatcher builds the matcher of one filter state. An empty substring
// matches every name.
func NewMatcher(substring string, caseSensitive bool) *Matcher {
	m := &Matcher{caseSensitive: caseSensitive}
	m.folders.New = func() any { return &folder{caser: cases.Fold(), buf: make([]byte, 0, 256)} }
	if caseSensitive {
		m.needle = []byte(substring)
	} else {
		m.needle = []byte(cases.Fold().String(substring))
	}
	m.asciiNeedle = isASCII(m.needle)
	return m
}

// Match reports whether name contains the matcher's substring.
func (m *Matcher) Match(name []byte) bool {
	if len(m.needle) == 0 {
		return true
	}
	if m.caseSensitive {
		return bytes.Contains(name, m.needle)
	}
	if isASCII(name) {
		// Folding ASCII is lowering ASCII, so compare in place. A needle
		// that folds to something non-ASCII cannot occur in ASCII text.
		return m.asciiNeedle && containsLowerASCII(name, m.needle)
	}
	f := m.folders.Get().(*folder)
	defer m.folders.Put(f)
	folded, ok := f.fold(name)
	if !ok {
		return false
	}
	return bytes.Contains(folded, m.needle)
}

// fold case-folds src into the folder's buffer, growing it when folding
// expands the text (ß becomes ss).
func (f *folder) fold(src []byte) ([]byte, bool) {
	if need := 2*len(src) + 8; cap(f.buf) < need {
		f.buf = make([]byte, 0, need)
	}
	for {
		f.caser.Reset()
		n, _, err := f.caser.Transform(f.buf[:cap(f.buf)], src, true)
		if err == nil {
			return f.buf[:n], true
		}
		if !errors.Is(err, transform.ErrShortDst) || cap(f.buf) > 8*len(src)+64 {
			return nil, false
		}
		f.buf = make([]byte, 0, 2*cap(f.buf))
	}
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// containsLowerASCII reports whether the ASCII text h, lowered, contains
// the lowercase ASCII needle n.
func containsLowerASCII(h, n []byte) bool {
	first := n[0]
	for i := 0; i+len(n) <= len(h); i++ {
		if lowerASCII(h[i]) != first {
			continue
		}
		j := 1
		for j < len(n) && lowerASCII(h[i+j]) == n[j] {
			j++
		}
		if j == len(n) {
			return true
		}
	}
	return false
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
