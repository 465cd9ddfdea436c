package recommender

import (
	"strings"
	"unicode"

	"golang.org/x/text/cases"
)

// Normalize returns the form in which product names and search prompts are
// compared: leading and trailing white space removed, Unicode case folded
// (full folding, so "STRASSE" and "straße" agree), and every inner run of
// white space collapsed to one ASCII space.
//
// ASCII input, by far the most common, takes a path that allocates nothing
// when the input is already normal and once otherwise.
func Normalize(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return normalizeUnicode(s)
		}
	}
	if isNormalASCII(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isASCIISpace(c) {
			space = len(b) > 0
			continue
		}
		if space {
			b = append(b, ' ')
			space = false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b)
}

// isNormalASCII reports whether ASCII s is already normalised: no upper
// case, no white space but single inner spaces.
func isNormalASCII(s string) bool {
	prevSpace := true // a leading space is not normal
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z':
			return false
		case c == ' ':
			if prevSpace {
				return false
			}
			prevSpace = true
		case isASCIISpace(c):
			return false
		default:
			prevSpace = false
		}
	}
	return !prevSpace || len(s) == 0
}

// isASCIISpace matches unicode.IsSpace on ASCII.
func isASCIISpace(c byte) bool {
	return c == ' ' || ('\t' <= c && c <= '\r')
}

func normalizeUnicode(s string) string {
	// A Caser keeps state between calls, so each call gets its own.
	folded := cases.Fold().String(s)
	var b strings.Builder
	b.Grow(len(folded))
	space := false
	for _, r := range folded {
		if unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}
