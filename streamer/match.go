package streamer

import (
	"bytes"
	"encoding/binary"
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
	lower         [256]byte
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
	for c := range m.lower {
		m.lower[c] = lowerASCII(byte(c))
	}
	return m
}

// shortName is the longest name Match lowers on the stack: longer ones
// take the slower paths.
const shortName = 128

// Match reports whether name contains the matcher's substring.
func (m *Matcher) Match(name []byte) bool {
	if len(m.needle) == 0 {
		return true
	}
	if m.caseSensitive {
		return bytes.Contains(name, m.needle)
	}
	if len(name) <= shortName {
		// Lower it and find out whether it is ASCII in one pass, then
		// search with bytes.Contains.
		var buf [shortName]byte
		if lowerASCIIInto(buf[:len(name)], name, &m.lower) {
			return m.asciiNeedle && bytes.Contains(buf[:len(name)], m.needle)
		}
	} else if isASCII(name) {
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

// lowerASCIIInto lowers the ASCII src into dst, eight bytes at a time,
// and says whether src was all ASCII (dst is then meaningless if not).
func lowerASCIIInto(dst, src []byte, lower *[256]byte) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	var all uint64
	i := 0
	for ; i+8 <= len(src); i += 8 {
		w := binary.LittleEndian.Uint64(src[i:])
		all |= w
		// A byte's high bit ends up set in upper when it is 'A'..'Z':
		// adding 0x80-'A' carries into it from 'A' up, adding 0x80-'Z'-1
		// from after 'Z' (bytes are ASCII here, so no carry crosses bytes).
		upper := (w + (0x80-'A')*ones) &^ (w + (0x80-'Z'-1)*ones) & highs
		binary.LittleEndian.PutUint64(dst[i:], w|upper>>2)
	}
	for ; i < len(src); i++ {
		all |= uint64(src[i])
		dst[i] = lower[src[i]]
	}
	return all&highs == 0
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
