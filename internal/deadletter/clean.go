package deadletter

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxDetail bounds a cleaned detail, in bytes.
const MaxDetail = 2000

// Clean makes a reason or an error text safe wherever it goes next: a
// Kafka header, a log line, a PostgreSQL text column, a JSON answer. Bytes
// that are not UTF-8 become U+FFFD; white space controls become a space and
// every other control character (NUL included, which PostgreSQL refuses in
// text) becomes U+FFFD, so that a reader sees something was there; the
// text is cut at MaxDetail bytes. The text comes from outside (an image
// server's status line, a product's fields), so none of it can be trusted
// to be printable.
func Clean(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			clean = false
			break
		}
	}
	if clean && len(s) <= MaxDetail {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), MaxDetail+4))
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			r = ' '
		case unicode.IsControl(r):
			r = utf8.RuneError
		}
		if b.Len()+utf8.RuneLen(r) > MaxDetail {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
