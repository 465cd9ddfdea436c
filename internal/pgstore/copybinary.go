package pgstore

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// The sink writes rows with COPY … (FORMAT binary), encoding each column
// itself: every column type it writes is one of a handful, and appending
// their binary forms directly costs a fraction of a generic encoder's work
// per value. The functions here append one field (its int32 length, then
// its bytes) to a tuple.

// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const pgEpochMicros = 946_684_800_000_000

// The range PostgreSQL's timestamptz accepts, in microseconds from its
// epoch: 4713-11-24 BC to 294276-12-31 AD.
const (
	minTimestampMicros = -211_813_488_000_000_000
	maxTimestampMicros = 9_223_371_331_200_000_000 - 1
)

// OIDs of the element types of the arrays the tables hold.
const textOID = 25

func appendInt16(b []byte, v int16) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }
func appendInt32(b []byte, v int32) []byte { return binary.BigEndian.AppendUint32(b, uint32(v)) }
func appendInt64(b []byte, v int64) []byte { return binary.BigEndian.AppendUint64(b, uint64(v)) }

// beginField reserves a field's length; endField fills it in.
func beginField(b []byte) ([]byte, int) { return append(b, 0, 0, 0, 0), len(b) }

func endField(b []byte, at int) []byte {
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b
}

func fieldText[T string | []byte](b []byte, s T) []byte {
	b = appendInt32(b, int32(len(s)))
	return append(b, s...)
}

func fieldInt4(b []byte, v int32) []byte { return appendInt32(appendInt32(b, 4), v) }
func fieldInt8(b []byte, v int64) []byte { return appendInt64(appendInt32(b, 8), v) }

func fieldBool(b []byte, v bool) []byte {
	c := byte(0)
	if v {
		c = 1
	}
	return append(appendInt32(b, 1), c)
}

// fieldJSONB appends a jsonb field: a version byte, then the JSON text.
func fieldJSONB(b []byte, json []byte) []byte {
	b = appendInt32(b, int32(1+len(json)))
	b = append(b, 1)
	return append(b, json...)
}

// fieldTimestamptzMillis appends a timestamptz given in milliseconds since
// the Unix epoch (Avro's timestamp-millis).
func fieldTimestamptzMillis(b []byte, field string, ms int64) ([]byte, error) {
	if ms > math.MaxInt64/1000 || ms < math.MinInt64/1000 {
		return b, invalid("field %s (%d ms) is outside PostgreSQL's timestamp range", field, ms)
	}
	us := ms*1000 - pgEpochMicros
	if us < minTimestampMicros || us > maxTimestampMicros {
		return b, invalid("field %s (%d ms) is outside PostgreSQL's timestamp range", field, ms)
	}
	return fieldInt8(b, us), nil
}

func fieldTimestamptz(b []byte, field string, t time.Time) ([]byte, error) {
	// Seconds first: microseconds since 1970 overflow an int64 before
	// PostgreSQL's range ends.
	sec := t.Unix() - pgEpochMicros/1_000_000
	if sec > maxTimestampMicros/1_000_000 || sec < minTimestampMicros/1_000_000 {
		return b, invalid("field %s (%s) is outside PostgreSQL's timestamp range", field, t.UTC().Format(time.RFC3339))
	}
	return fieldInt8(b, sec*1_000_000+int64(t.Nanosecond()/1000)), nil
}

// beginTextArray starts a one-dimensional text[] of n elements (an empty
// array when n is 0); the elements follow as fields.
func beginTextArray(b []byte, n int) ([]byte, int) {
	b, at := beginField(b)
	if n == 0 {
		b = appendInt32(b, 0) // no dimensions
		b = appendInt32(b, 0) // no nulls
		return appendInt32(b, textOID), at
	}
	b = appendInt32(b, 1)
	b = appendInt32(b, 0)
	b = appendInt32(b, textOID)
	b = appendInt32(b, int32(n))
	return appendInt32(b, 1), at // lower bound
}

// fieldNumeric appends a numeric from a decimal string that isDecimal has
// accepted: an optional minus, digits, and an optional dot and digits.
// PostgreSQL's binary numeric is base-10000 digits with a weight (the
// power of 10000 of the first) and the display scale.
func fieldNumeric[T string | []byte](b []byte, s T) []byte {
	neg := false
	if s[0] == '-' {
		neg, s = true, s[1:]
	}
	intPart, frac := s, s[:0]
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			intPart, frac = s[:i], s[i+1:]
			break
		}
	}
	for len(intPart) > 1 && intPart[0] == '0' {
		intPart = intPart[1:]
	}
	if len(intPart) == 1 && intPart[0] == '0' {
		intPart = intPart[:0]
	}
	dscale := len(frac)
	// Groups of four digits, aligned on the decimal point.
	var digits [64]int16 // 200 digits at most (isDecimal), 52 groups
	n := 0
	lead := len(intPart) % 4
	if lead == 0 && len(intPart) > 0 {
		lead = 4
	}
	weight := int16((len(intPart)+3)/4 - 1)
	for i := 0; i < len(intPart); {
		end := i + lead
		if i > 0 {
			end = i + 4
		}
		digits[n] = int16(atoi4(intPart[i:end]))
		n++
		i = end
	}
	for i := 0; i < len(frac); i += 4 {
		g := frac[i:min(i+4, len(frac))]
		v := atoi4(g)
		for k := len(g); k < 4; k++ {
			v *= 10
		}
		digits[n] = int16(v)
		n++
	}
	// Leading zero groups move the weight; trailing ones are dropped.
	start := 0
	for start < n && digits[start] == 0 {
		start++
		weight--
	}
	for n > start && digits[n-1] == 0 {
		n--
	}
	if start == n {
		weight, neg = 0, false
	}
	sign := uint16(0)
	if neg {
		sign = 0x4000
	}
	b = appendInt32(b, int32(8+2*(n-start)))
	b = appendInt16(b, int16(n-start))
	b = appendInt16(b, weight)
	b = binary.BigEndian.AppendUint16(b, sign)
	b = appendInt16(b, int16(dscale))
	for _, d := range digits[start:n] {
		b = appendInt16(b, d)
	}
	return b
}

func atoi4[T string | []byte](s T) int {
	v := 0
	for i := 0; i < len(s); i++ {
		v = v*10 + int(s[i]-'0')
	}
	return v
}

// isDecimal says whether s is an optional minus, 1 or more digits, and an
// optional dot followed by 1 or more digits, 200 digits at most: what
// parseDecimal accepts.
func isDecimal[T string | []byte](s T) bool {
	i := 0
	if len(s) > 0 && s[0] == '-' {
		i = 1
	}
	intDigits, fracDigits, dot := 0, 0, false
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if dot {
				fracDigits++
			} else {
				intDigits++
			}
		case c == '.' && !dot:
			dot = true
		default:
			return false
		}
	}
	return intDigits > 0 && (!dot || fracDigits > 0) && intDigits+fracDigits <= 200
}

// appendValues appends the fields of a row given as Go values (what
// ProductValues and the other …Values functions return), in t's column
// order.
func appendValues(b []byte, t *Table, vals []any) ([]byte, error) {
	if len(vals) != len(t.Columns) {
		return b, fmt.Errorf("%s: %d values for %d columns", t.Name, len(vals), len(t.Columns))
	}
	var err error
	for i, v := range vals {
		c := t.Columns[i]
		switch v := v.(type) {
		case string:
			b = fieldText(b, v)
		case []byte: // jsonb, already encoded
			b = fieldJSONB(b, v)
		case int32:
			b = fieldInt4(b, v)
		case time.Time:
			if b, err = fieldTimestamptz(b, c.Name, v); err != nil {
				return b, err
			}
		case []string:
			var at int
			b, at = beginTextArray(b, len(v))
			for _, s := range v {
				b = fieldText(b, s)
			}
			b = endField(b, at)
		case pgtype.Numeric:
			s, err := v.Value()
			str, ok := s.(string)
			if err != nil || !ok || !isDecimal(str) {
				return b, invalid("field %s is not a finite decimal number", c.Name)
			}
			b = fieldNumeric(b, str)
		default:
			return b, fmt.Errorf("%s.%s: cannot encode a %T", t.Name, c.Name, v)
		}
	}
	return b, nil
}
