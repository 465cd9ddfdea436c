package randid

import (
	"encoding/hex"
	"testing"
)

// Ids are as long as asked, hexadecimal, and do not repeat.
func TestHexIsRandomHexOfTheAskedLength(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := Hex(4)
		if _, err := hex.DecodeString(id); err != nil || len(id) != 8 {
			t.Fatalf("Hex(4) = %q, want 8 hexadecimal digits", id)
		}
		if seen[id] {
			t.Fatalf("Hex(4) repeated %q within 1000 draws", id)
		}
		seen[id] = true
	}
}
