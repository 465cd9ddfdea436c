package pgstore

import (
	"bytes"
	"fmt"
	"unicode/utf8"

	"github.com/shopstream/shopstream/internal/records"
)

// AppendProductTuple appends the columns of Products (and FilteredProducts)
// for a product record, reading its Avro body (written with shopstream's
// own Product schema, no framing) straight into COPY's binary format: no
// Go values in between. It checks what ProductValues checks and reports a
// value PostgreSQL cannot store as an *InvalidError; a body that is not one
// whole Product is an error wrapping records.ErrMalformed, which takes
// precedence as it does when decoding.
func AppendProductTuple(dst, key, body []byte) ([]byte, error) {
	r := avroReader{b: body}
	dst = r.product(dst, key)
	return r.finish(dst)
}

// AppendCompleteProductTuple is AppendProductTuple for CompleteProducts,
// reading a CompleteProduct body.
func AppendCompleteProductTuple(dst, key, body []byte) ([]byte, error) {
	r := avroReader{b: body}
	dst = r.product(dst, key)
	dst = r.storedImages(dst)
	dst = r.timestamp(dst, "collected_at")
	return r.finish(dst)
}

// Errors of the reader; values, so a bad record allocates nothing to reject.
var (
	errTruncated = fmt.Errorf("%w: the value ends inside a field (truncated)", records.ErrMalformed)
	errNegative  = fmt.Errorf("%w: a negative length or count", records.ErrMalformed)
	errVarint    = fmt.Errorf("%w: a varint longer than its type allows", records.ErrMalformed)
	errTrailing  = fmt.Errorf("%w: trailing bytes after the record", records.ErrMalformed)
)

// avroReader walks one body. The first structural error stops it; the
// first invalid value is kept while it goes on, so that a truncated record
// is reported as such even when an earlier field was also unstorable.
type avroReader struct {
	b       []byte
	i       int
	err     error // structural
	invalid error
}

func (r *avroReader) finish(dst []byte) ([]byte, error) {
	if r.err == nil && r.i != len(r.b) {
		r.err = errTrailing
	}
	if r.err != nil {
		return dst, r.err
	}
	return dst, r.invalid
}

func (r *avroReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *avroReader) bad(err error) {
	if r.invalid == nil {
		r.invalid = err
	}
}

func (r *avroReader) long(maxBytes int) int64 {
	if r.err != nil {
		return 0
	}
	if r.i < len(r.b) && r.b[r.i] < 0x80 { // one byte: lengths, counts, small values
		c := r.b[r.i]
		r.i++
		return int64(c>>1) ^ -int64(c&1)
	}
	var u uint64
	for n := 0; n < maxBytes; n++ {
		if r.i >= len(r.b) {
			r.fail(errTruncated)
			return 0
		}
		c := r.b[r.i]
		r.i++
		u |= uint64(c&0x7f) << (7 * n)
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1)
		}
	}
	r.fail(errVarint)
	return 0
}

// bytes returns the next string or bytes value, a sub-slice of the body.
func (r *avroReader) bytes() []byte {
	l := r.long(10)
	if r.err != nil {
		return nil
	}
	if l < 0 {
		r.fail(errNegative)
		return nil
	}
	if l > int64(len(r.b)-r.i) {
		r.fail(errTruncated)
		return nil
	}
	s := r.b[r.i : r.i+int(l)]
	r.i += int(l)
	return s
}

// text returns the next string after checking that PostgreSQL can store it.
func (r *avroReader) text(field string) []byte {
	s := r.bytes()
	if r.invalid == nil && r.err == nil {
		if err := checkText(field, s); err != nil {
			r.bad(err)
		}
	}
	return s
}

// checkText is text's check for bytes, in one pass over ASCII.
func checkText(field string, s []byte) error {
	for i, c := range s {
		if c == 0 || c >= utf8.RuneSelf {
			if !utf8.Valid(s[i:]) {
				return invalid("field %s is not valid UTF-8", field)
			}
			if bytes.IndexByte(s[i:], 0) >= 0 {
				return invalid("field %s contains a NUL character, which PostgreSQL cannot store", field)
			}
			return nil
		}
	}
	return nil
}

// blockCount returns the item count of the next block of an array or map;
// 0 ends the value.
func (r *avroReader) blockCount() int {
	n := r.long(10)
	if r.err != nil {
		return 0
	}
	if n < 0 {
		if n == -1<<63 {
			r.fail(errNegative)
			return 0
		}
		n = -n
		if size := r.long(10); size < 0 {
			r.fail(errNegative)
			return 0
		}
	}
	// Every item takes at least one byte: a count beyond the bytes left is
	// a lie, and believing it would let a hostile count spin.
	if n > int64(len(r.b)-r.i) {
		r.fail(errTruncated)
		return 0
	}
	return int(n)
}

// product reads a Product and appends the key column and the 15 columns
// that follow it in productColumns.
func (r *avroReader) product(dst, key []byte) []byte {
	dst = fieldText(dst, key)
	productID := r.text("product_id")
	mallID := r.text("mall_id")
	if r.err == nil && (len(key) != len(mallID)+1+len(productID) || !bytes.HasPrefix(key, mallID) ||
		key[len(mallID)] != '/' || !bytes.HasSuffix(key, productID)) {
		// Reported first, as checkProduct does.
		r.invalid = invalid("record key %q does not match the value's mall_id/product_id %q",
			truncate(string(key)), truncate(records.ProductKey(string(mallID), string(productID))))
	}
	dst = fieldText(dst, productID)
	dst = fieldText(dst, mallID)
	dst = fieldText(dst, r.text("name"))
	dst = fieldText(dst, r.text("description"))
	amount := r.bytes()
	var amountErr error
	if r.err == nil && !isDecimal(amount) {
		amountErr = invalid("price.amount %q is not a decimal number", truncate(string(amount)))
	}
	currency := r.text("price.currency")
	if amountErr == nil && r.err == nil {
		dst = fieldNumeric(dst, amount)
	}
	dst = fieldText(dst, currency)
	dst = fieldText(dst, r.text("category"))
	dst = fieldText(dst, r.text("brand"))
	dst = fieldText(dst, r.text("sku"))

	// tags: array<string>. The element count is only known at the end of
	// the blocks, so the array header is patched afterwards.
	dst, at := beginTextArray(dst, 1)
	countAt := len(dst) - 8
	tags := 0
	for n := r.blockCount(); n > 0; n = r.blockCount() {
		for ; n > 0; n-- {
			dst = fieldText(dst, r.text("tags"))
			tags++
		}
	}
	if tags == 0 {
		dst = dst[:at]
		dst, at = beginTextArray(dst, 0)
	} else {
		putInt32(dst[countAt:], int32(tags))
	}
	dst = endField(dst, at)

	// images: array<{url, alt}> as a JSON array, written in place.
	dst, at = beginField(dst)
	dst = endField(r.jsonItems(append(dst, 1), '[', ']', func(j []byte) []byte { // 1: jsonb's version byte
		return appendImageJSON(j, r.text("images"), r.text("images"))
	}), at)

	stock := r.long(5)
	if stock > 1<<31-1 || stock < -1<<31 {
		r.fail(fmt.Errorf("%w: stock %d does not fit an int", records.ErrMalformed, stock))
	}
	dst = fieldInt4(dst, int32(stock))

	// specifications: map<string> as a JSON object; jsonb keeps the last
	// value of a repeated key, as decoding into a Go map does.
	dst, at = beginField(dst)
	dst = endField(r.jsonItems(append(dst, 1), '{', '}', func(j []byte) []byte {
		j = append(appendJSONString(j, r.text("specifications")), ':')
		return appendJSONString(j, r.text("specifications"))
	}), at)

	dst = r.timestamp(dst, "created_at")
	dst = r.timestamp(dst, "updated_at")
	if amountErr != nil {
		r.bad(amountErr)
	}
	return dst
}

// storedImages reads a CompleteProduct's images as the stored_images
// column.
func (r *avroReader) storedImages(dst []byte) []byte {
	dst, at := beginField(dst)
	return endField(r.jsonItems(append(dst, 1), '[', ']', func(j []byte) []byte {
		return appendStoredImageJSON(j, r.text("images"), r.text("images"), r.text("images"), r.long(10), r.text("images"))
	}), at)
}

// jsonItems appends an Avro array's or map's items between open and close,
// comma-separated, each read and written by item.
func (r *avroReader) jsonItems(j []byte, open, close byte, item func([]byte) []byte) []byte {
	j = append(j, open)
	first := true
	for n := r.blockCount(); n > 0; n = r.blockCount() {
		for ; n > 0; n-- {
			if !first {
				j = append(j, ',')
			}
			first = false
			j = item(j)
		}
	}
	return append(j, close)
}

func (r *avroReader) timestamp(dst []byte, field string) []byte {
	ms := r.long(10)
	if r.err != nil {
		return dst
	}
	out, err := fieldTimestamptzMillis(dst, field, ms)
	if err != nil {
		r.bad(err)
		return fieldInt8(dst, 0)
	}
	return out
}

func putInt32(b []byte, v int32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}
