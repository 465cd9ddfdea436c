package streamer

import (
	"errors"
	"fmt"

	"github.com/hamba/avro/v2"

	"github.com/shopstream/shopstream/internal/records"
)

// Errors of the raw reader. They wrap records.ErrMalformed and are values,
// so a bad record costs no allocation to reject.
var (
	errTruncated  = fmt.Errorf("%w: the value ends inside a field (truncated)", records.ErrMalformed)
	errNegative   = fmt.Errorf("%w: a negative length or count", records.ErrMalformed)
	errVarint     = fmt.Errorf("%w: a varint longer than its type allows", records.ErrMalformed)
	errTrailing   = fmt.Errorf("%w: bytes after the end of the record", records.ErrMalformed)
	errUnionIndex = fmt.Errorf("%w: a union branch index out of range", records.ErrMalformed)
	errEnumIndex  = fmt.Errorf("%w: an enum index out of range", records.ErrMalformed)
	errTooDeep    = fmt.Errorf("%w: values nested deeper than %d levels", records.ErrMalformed, maxDepth)
)

// maxDepth bounds the nesting a recursive writer schema could make a hostile
// value walk through, so a crafted value cannot exhaust the stack.
const maxDepth = 64

// ReadName returns the name of an Avro-encoded Product body: the third of
// its three leading string fields (product_id, mall_id, name). The name is a
// sub-slice of body; nothing is copied or allocated. It reads nothing past
// the name: Layout.Name also checks that the whole record is there.
func ReadName(body []byte) ([]byte, error) {
	start, end, err := nameBounds(body)
	if err != nil {
		return nil, err
	}
	return body[start:end:end], nil
}

// nameBounds checks the three leading strings of a Product body and returns
// where the third, the name, starts and ends. Every writer schema NewLayout
// accepts starts this way, so no layout is needed to find the name.
func nameBounds(body []byte) (start, end int, err error) {
	i, err := skipString(body, 0)
	if err != nil {
		return 0, 0, err
	}
	if i, err = skipString(body, i); err != nil {
		return 0, 0, err
	}
	return readString(body, i)
}

// readLong decodes a zig-zag varint of at most maxBytes bytes at b[i:].
func readLong(b []byte, i, maxBytes int) (v int64, next int, err error) {
	var u uint64
	for n := 0; n < maxBytes; n++ {
		if i+n >= len(b) {
			return 0, 0, errTruncated
		}
		c := b[i+n]
		u |= uint64(c&0x7f) << (7 * n)
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1), i + n + 1, nil
		}
	}
	return 0, 0, errVarint
}

// readString returns the bounds of the string or bytes value at b[i:].
func readString(b []byte, i int) (start, end int, err error) {
	l, i, err := readLong(b, i, 10)
	if err != nil {
		return 0, 0, err
	}
	if l < 0 {
		return 0, 0, errNegative
	}
	if l > int64(len(b)-i) {
		return 0, 0, errTruncated
	}
	return i, i + int(l), nil
}

func skipString(b []byte, i int) (int, error) {
	// Nearly every length fits one byte (under 64): read it here, inline.
	if i < len(b) && b[i] < 0x80 {
		c := b[i]
		if c&1 != 0 {
			return 0, errNegative
		}
		end := i + 1 + int(c>>1)
		if end > len(b) {
			return 0, errTruncated
		}
		return end, nil
	}
	_, end, err := readString(b, i)
	return end, err
}

// Layout reads a Product's name from a body written with one particular
// writer schema and checks that the body holds exactly one whole record, by
// walking every field after the name without decoding it. It allocates
// nothing per value.
type Layout struct {
	root *node
	// own says that the writer schema is shopstream's Product itself,
	// which walkProductRest walks without the general walker's dispatch.
	own bool
}

type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindInt
	kindLong
	kindFloat
	kindDouble
	kindBytes // string or bytes
	kindFixed
	kindEnum
	kindArray
	kindMap
	kindUnion
	kindRecord
)

type node struct {
	kind     kind
	size     int     // fixed: its size; enum: number of symbols
	elem     *node   // array items, map values
	children []*node // record fields, union branches
	// empty says that a value of this type takes no bytes at all (null, a
	// record of nulls), so a block of them needs no walking.
	empty bool
}

// productPrefix is what the raw reader relies on: the writer's first three
// fields, in order, all plain strings.
var productPrefix = [3]string{"product_id", "mall_id", "name"}

// NewLayout checks that writer is a Product-shaped record (its first three
// fields are the strings product_id, mall_id and name) that resolves to the
// reader schema ours (nil skips that check), and compiles the walker for it.
// The error wraps records.ErrWrongSchema.
func NewLayout(writer, ours avro.Schema) (*Layout, error) {
	rec, ok := deref(writer).(*avro.RecordSchema)
	if !ok {
		return nil, fmt.Errorf("%w: a %s, not a record", records.ErrWrongSchema, writer.Type())
	}
	fields := rec.Fields()
	if len(fields) < len(productPrefix) {
		return nil, fmt.Errorf("%w: record %s has %d fields, a product starts with %v", records.ErrWrongSchema, rec.FullName(), len(fields), productPrefix)
	}
	for i, want := range productPrefix {
		f := fields[i]
		p, ok := deref(f.Type()).(*avro.PrimitiveSchema)
		if f.Name() != want || !ok || p.Type() != avro.String {
			return nil, fmt.Errorf("%w: record %s field %d is %s (%s), a product's is %s (string)", records.ErrWrongSchema, rec.FullName(), i, f.Name(), f.Type().Type(), want)
		}
	}
	if ours != nil && writer.Fingerprint() != ours.Fingerprint() {
		if err := avro.NewSchemaCompatibility().Compatible(ours, writer); err != nil {
			return nil, fmt.Errorf("%w: record %s does not resolve to shopstream's Product: %v", records.ErrWrongSchema, rec.FullName(), err)
		}
	}
	root, err := compile(writer, map[string]*node{})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", records.ErrWrongSchema, err)
	}
	return &Layout{root: root, own: ours != nil && writer.Fingerprint() == ours.Fingerprint() && isShopstreamProduct(ours)}, nil
}

func deref(s avro.Schema) avro.Schema {
	if r, ok := s.(*avro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

// compile turns a schema into a walker node. Named types are compiled once,
// so a recursive schema becomes a cyclic graph rather than endless recursion.
func compile(s avro.Schema, named map[string]*node) (*node, error) {
	if r, ok := s.(*avro.RefSchema); ok {
		if n, ok := named[r.Schema().FullName()]; ok {
			return n, nil
		}
		s = r.Schema()
	}
	switch s := s.(type) {
	case *avro.NullSchema:
		return &node{kind: kindNull, empty: true}, nil
	case *avro.PrimitiveSchema:
		switch s.Type() {
		case avro.Boolean:
			return &node{kind: kindBool}, nil
		case avro.Int:
			return &node{kind: kindInt}, nil
		case avro.Long:
			return &node{kind: kindLong}, nil
		case avro.Float:
			return &node{kind: kindFloat}, nil
		case avro.Double:
			return &node{kind: kindDouble}, nil
		case avro.String, avro.Bytes:
			return &node{kind: kindBytes}, nil
		}
	case *avro.FixedSchema:
		n := &node{kind: kindFixed, size: s.Size(), empty: s.Size() == 0}
		named[s.FullName()] = n
		return n, nil
	case *avro.EnumSchema:
		n := &node{kind: kindEnum, size: len(s.Symbols())}
		named[s.FullName()] = n
		return n, nil
	case *avro.ArraySchema:
		elem, err := compile(s.Items(), named)
		if err != nil {
			return nil, err
		}
		return &node{kind: kindArray, elem: elem}, nil
	case *avro.MapSchema:
		elem, err := compile(s.Values(), named)
		if err != nil {
			return nil, err
		}
		return &node{kind: kindMap, elem: elem}, nil
	case *avro.UnionSchema:
		n := &node{kind: kindUnion}
		for _, t := range s.Types() {
			c, err := compile(t, named)
			if err != nil {
				return nil, err
			}
			n.children = append(n.children, c)
		}
		return n, nil
	case *avro.RecordSchema:
		n := &node{kind: kindRecord}
		named[s.FullName()] = n // before the fields: they may refer back
		n.empty = true
		for _, f := range s.Fields() {
			c, err := compile(f.Type(), named)
			if err != nil {
				return nil, err
			}
			n.children = append(n.children, c)
			n.empty = n.empty && c.empty
		}
		return n, nil
	}
	return nil, fmt.Errorf("schema type %s is not supported", s.Type())
}

// Name returns the product's name (a sub-slice of body) after checking that
// body is exactly one whole record of the layout's schema.
func (l *Layout) Name(body []byte) ([]byte, error) {
	start, end, err := nameBounds(body)
	if err != nil {
		return nil, err
	}
	if err := l.Rest(body, end); err != nil {
		return nil, err
	}
	return body[start:end:end], nil
}

// Rest checks that body, from i (where the name ends) on, holds exactly the
// fields after the name: with the check of the name's own bounds, that body
// is one whole record of the layout's schema.
func (l *Layout) Rest(body []byte, i int) error {
	if l.own {
		return walkProductRest(body, i)
	}
	var err error
	for _, f := range l.root.children[len(productPrefix):] {
		if i, err = skip(f, body, i, 1); err != nil {
			return err
		}
	}
	if i != len(body) {
		return errTrailing
	}
	return nil
}

// skip walks the value of type n at b[i:] and returns where it ends.
func skip(n *node, b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return 0, errTooDeep
	}
	switch n.kind {
	case kindNull:
		return i, nil
	case kindBool:
		if i >= len(b) {
			return 0, errTruncated
		}
		return i + 1, nil
	case kindInt:
		_, i, err := readLong(b, i, 5)
		return i, err
	case kindLong:
		_, i, err := readLong(b, i, 10)
		return i, err
	case kindFloat:
		return fixedWidth(b, i, 4)
	case kindDouble:
		return fixedWidth(b, i, 8)
	case kindBytes:
		return skipString(b, i)
	case kindFixed:
		return fixedWidth(b, i, n.size)
	case kindEnum:
		v, i, err := readLong(b, i, 5)
		if err != nil {
			return 0, err
		}
		if v < 0 || v >= int64(n.size) {
			return 0, errEnumIndex
		}
		return i, nil
	case kindUnion:
		v, i, err := readLong(b, i, 10)
		if err != nil {
			return 0, err
		}
		if v < 0 || v >= int64(len(n.children)) {
			return 0, errUnionIndex
		}
		return skip(n.children[v], b, i, depth+1)
	case kindRecord:
		var err error
		for _, f := range n.children {
			if i, err = skip(f, b, i, depth+1); err != nil {
				return 0, err
			}
		}
		return i, nil
	case kindArray, kindMap:
		return skipBlocks(n, b, i, depth)
	}
	return 0, errors.New("unreachable: unknown node kind")
}

// skipBlocks walks the blocks of an array or map: each block is a count
// (negative: followed by the block's size in bytes), then that many items; a
// zero count ends the value.
func skipBlocks(n *node, b []byte, i, depth int) (int, error) {
	for {
		count, next, err := blockHeader(b, i)
		if err != nil {
			return 0, err
		}
		i = next
		if count == 0 {
			return i, nil
		}
		isMap := n.kind == kindMap
		if n.elem.empty && !isMap {
			continue // items of no bytes: nothing to walk, however many
		}
		// Every item takes at least one byte, so a count beyond the bytes
		// left is a lie; checking it first keeps a hostile count from
		// spinning.
		if count > int64(len(b)-i) {
			return 0, errTruncated
		}
		for ; count > 0; count-- {
			if isMap {
				if i, err = skipString(b, i); err != nil {
					return 0, err
				}
			}
			if i, err = skip(n.elem, b, i, depth+1); err != nil {
				return 0, err
			}
		}
	}
}

// blockHeader reads the header of a block of an array or map at b[i:]: its
// item count (0 ends the value), and, when the count is written negative,
// the block's size in bytes, which must fit in what is left.
func blockHeader(b []byte, i int) (count int64, next int, err error) {
	if i < len(b) && b[i] < 0x80 { // a count under 64: one byte
		c := b[i]
		count, next = int64(c>>1)^-int64(c&1), i+1
	} else if count, next, err = readLong(b, i, 10); err != nil {
		return 0, 0, err
	}
	if count >= 0 {
		return count, next, nil
	}
	if count == -1<<63 {
		return 0, 0, errNegative
	}
	size, next, err := readLong(b, next, 10)
	if err != nil {
		return 0, 0, err
	}
	if size < 0 {
		return 0, 0, errNegative
	}
	if size > int64(len(b)-next) {
		return 0, 0, errTruncated
	}
	return -count, next, nil
}

func fixedWidth(b []byte, i, n int) (int, error) {
	if n > len(b)-i {
		return 0, errTruncated
	}
	return i + n, nil
}

// productFields is shopstream's Product schema as nameBounds and
// walkProductRest walk it: the field names and what each is.
var productFields = [...]struct {
	name string
	kind kind
}{
	{"product_id", kindBytes}, {"mall_id", kindBytes}, {"name", kindBytes}, {"description", kindBytes},
	{"price", kindRecord}, {"category", kindBytes}, {"brand", kindBytes}, {"sku", kindBytes},
	{"tags", kindArray}, {"images", kindArray}, {"stock", kindInt}, {"specifications", kindMap},
	{"created_at", kindLong}, {"updated_at", kindLong},
}

// isShopstreamProduct checks that ours has the fields walkProductRest
// expects, so that a change to Product.avsc cannot leave it walking the old
// shape (TestWalkProductAgreesWithTheWalker also compares the two walkers).
func isShopstreamProduct(ours avro.Schema) bool {
	rec, ok := deref(ours).(*avro.RecordSchema)
	if !ok || len(rec.Fields()) != len(productFields) {
		return false
	}
	for i, f := range rec.Fields() {
		if f.Name() != productFields[i].name {
			return false
		}
	}
	return true
}

// walkProductRest is Layout.Rest for a body written with shopstream's own
// Product schema: the same checks, in straight-line code. It walks every
// record the streamer forwards, so it gets a walker of its own. A string
// that runs past the end is caught by the next read, or by the final check
// that the record ends exactly at the end of b.
func walkProductRest(b []byte, i int) error {
	var err error
	// description, price.amount, price.currency, category, brand, sku
	for range 6 {
		if i, err = skipStr(b, i); err != nil {
			return err
		}
	}
	// tags: strings; images: url and alt; stock; specifications: key and
	// value; created_at; updated_at.
	if i, err = skipStrings(b, i, 1); err != nil {
		return err
	}
	if i, err = skipStrings(b, i, 2); err != nil {
		return err
	}
	if _, i, err = readLong(b, i, 5); err != nil {
		return err
	}
	if i, err = skipStrings(b, i, 2); err != nil {
		return err
	}
	if _, i, err = readLong(b, i, 10); err != nil {
		return err
	}
	if _, i, err = readLong(b, i, 10); err != nil {
		return err
	}
	if i != len(b) {
		if i > len(b) {
			return errTruncated
		}
		return errTrailing
	}
	return nil
}

// skipStr returns where the string at b[i:] ends. A length of one or two
// bytes (under 8 KiB: nearly every string) is read here; the end it returns
// may then lie past len(b), which the caller's next read or final check
// reports as truncated.
func skipStr(b []byte, i int) (int, error) {
	if i+1 < len(b) {
		if c := b[i]; c < 0x80 {
			if c&1 == 0 {
				return i + 1 + int(c>>1), nil
			}
		} else if d := b[i+1]; d < 0x80 {
			if v := int(c&0x7f) | int(d)<<7; v&1 == 0 {
				return i + 2 + v>>1, nil
			}
		}
	}
	_, end, err := readString(b, i)
	return end, err
}

// skipStrings walks the blocks of an array of strings (per 1), of records
// of two strings or of a map of strings (per 2).
func skipStrings(b []byte, i, per int) (int, error) {
	n := len(b)
	for {
		count, next, err := blockHeader(b, i)
		if err != nil {
			return 0, err
		}
		i = next
		if count == 0 {
			return i, nil
		}
		// Every item takes at least one byte: a count beyond the bytes left
		// is a lie, and believing it would let a hostile count spin.
		if count > int64(n-i) {
			return 0, errTruncated
		}
		for k := count * int64(per); k > 0; k-- {
			if i, err = skipStr(b, i); err != nil {
				return 0, err
			}
		}
	}
}
