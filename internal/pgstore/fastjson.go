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

// appendImageJSON appends one image as the products' images column holds
// it; the Go path (imagesJSON) and the Avro path (avroReader.product) both
// write it here.
func appendImageJSON[T string | []byte](b []byte, url, alt T) []byte {
	b = append(b, `{"url":`...)
	b = appendJSONString(b, url)
	b = append(b, `,"alt":`...)
	b = appendJSONString(b, alt)
	return append(b, '}')
}

// appendStoredImageJSON appends one collected image as the stored_images
// column holds it (storedImagesJSON and avroReader.storedImages).
func appendStoredImageJSON[T string | []byte](b []byte, url, path, sha256 T, size int64, contentType T) []byte {
	b = append(b, `{"url":`...)
	b = appendJSONString(b, url)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, path)
	b = append(b, `,"sha256":`...)
	b = appendJSONString(b, sha256)
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, size, 10)
	b = append(b, `,"content_type":`...)
	b = appendJSONString(b, contentType)
	return append(b, '}')
}

// appendJSONArray appends items as a JSON array, each written by item.
func appendJSONArray[T any](b []byte, items []T, item func([]byte, T) []byte) []byte {
	b = append(b, '[')
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = item(b, it)
	}
	return append(b, ']')
}

func imagesJSON(images []records.Image) []byte {
	return appendJSONArray(make([]byte, 0, 2+len(images)*48), images, func(b []byte, im records.Image) []byte {
		return appendImageJSON(b, im.URL, im.Alt)
	})
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
	return appendJSONArray(make([]byte, 0, 2+len(images)*160), images, func(b []byte, im records.StoredImage) []byte {
		return appendStoredImageJSON(b, im.URL, im.Path, im.SHA256, im.Size, im.ContentType)
	})
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
