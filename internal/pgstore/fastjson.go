package pgstore

import (
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shopstream/shopstream/internal/records"
)

// The sink builds the JSONB columns of every product it writes; encoding
// them by hand is several times faster than encoding/json's reflection.
// Strings have already been checked to be valid UTF-8 without NULs.

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string.
func appendJSONString[T string | []byte](b []byte, s T) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			continue
		}
		if c >= utf8.RuneSelf {
			// U+2028 and U+2029 are valid JSON; everything else above ASCII
			// is copied as is.
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func imagesJSON(images []records.Image) []byte {
	b := make([]byte, 0, 2+len(images)*48)
	b = append(b, '[')
	for i, im := range images {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"url":`...)
		b = appendJSONString(b, im.URL)
		b = append(b, `,"alt":`...)
		b = appendJSONString(b, im.Alt)
		b = append(b, '}')
	}
	return append(b, ']')
}

func stringMapJSON(m map[string]string) []byte {
	b := make([]byte, 0, 2+len(m)*32)
	b = append(b, '{')
	first := true
	for k, v := range m { // jsonb orders keys itself
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, v)
	}
	return append(b, '}')
}

func storedImagesJSON(images []records.StoredImage) []byte {
	b := make([]byte, 0, 2+len(images)*160)
	b = append(b, '[')
	for i, im := range images {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"url":`...)
		b = appendJSONString(b, im.URL)
		b = append(b, `,"path":`...)
		b = appendJSONString(b, im.Path)
		b = append(b, `,"sha256":`...)
		b = appendJSONString(b, im.SHA256)
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, im.Size, 10)
		b = append(b, `,"content_type":`...)
		b = appendJSONString(b, im.ContentType)
		b = append(b, '}')
	}
	return append(b, ']')
}

// parseDecimal turns "-12.50" into a numeric that keeps its scale; ok is
// false for anything isDecimal refuses.
func parseDecimal(s string) (pgtype.Numeric, bool) {
	if !isDecimal(s) {
		return pgtype.Numeric{}, false
	}
	intPart, frac, _ := strings.Cut(s, ".")
	digits := intPart + frac
	var n big.Int
	if len(digits) <= 18 {
		v, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			return pgtype.Numeric{}, false
		}
		n.SetInt64(v)
	} else if _, ok := n.SetString(digits, 10); !ok {
		return pgtype.Numeric{}, false
	}
	return pgtype.Numeric{Int: &n, Exp: -int32(len(frac)), Valid: true}, true
}
