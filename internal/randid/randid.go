// Package randid makes the random part of shopstream's ids: streamer
// instance and transactional ids, filter request ids, search ids and
// emulation workflow ids.
package randid

import (
	"crypto/rand"
	"encoding/hex"
)

// Hex returns n random bytes as 2n hexadecimal digits.
func Hex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error (its documentation says so)
	return hex.EncodeToString(b)
}
