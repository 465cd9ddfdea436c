package shopgen

import (
	"encoding/hex"

	"github.com/hamba/avro/v2"

	"github.com/shopstream/shopstream/internal/records"
)

// ProductSchemaFingerprint is the SHA-256 fingerprint of the Product schema
// that AppendProductAvro writes. A test pins it to records' schema; callers
// check it with WritesSchema and fall back to the generic encoder when the
// schema has moved on.
const ProductSchemaFingerprint = "136e6b505d2bc763b142a24542f217b378a703fbb14e2b25fa6c3f02e09ff617"

// WritesSchema says whether AppendProductAvro writes exactly schema.
func WritesSchema(schema avro.Schema) bool {
	if schema == nil {
		return false
	}
	fp := schema.Fingerprint()
	return hex.EncodeToString(fp[:]) == ProductSchemaFingerprint
}

// AppendProductAvro appends p's Avro binary encoding (the body, without the
// Confluent header) to dst. It writes what hamba/avro writes for the Product
// schema, with the specifications in key order, so the same product always
// encodes to the same bytes; it allocates nothing when dst has room. The
// generic encoder costs about 2 µs a product through reflection, more than
// Kafka spends on it, which is why the emulator writes products itself.
func AppendProductAvro(dst []byte, p *records.Product) []byte {
	dst = appendString(dst, p.ProductID)
	dst = appendString(dst, p.MallID)
	dst = appendString(dst, p.Name)
	dst = appendString(dst, p.Description)
	dst = appendString(dst, p.Price.Amount)
	dst = appendString(dst, p.Price.Currency)
	dst = appendString(dst, p.Category)
	dst = appendString(dst, p.Brand)
	dst = appendString(dst, p.SKU)
	// Arrays and maps are written as hamba/avro writes them: one block whose
	// negative item count is followed by its size in bytes (which lets a
	// reader skip it), then the zero end marker.
	if len(p.Tags) > 0 {
		size := 0
		for _, t := range p.Tags {
			size += stringSize(t)
		}
		dst = appendLong(appendLong(dst, -int64(len(p.Tags))), int64(size))
		for _, t := range p.Tags {
			dst = appendString(dst, t)
		}
	}
	dst = append(dst, 0)
	if len(p.Images) > 0 {
		size := 0
		for _, im := range p.Images {
			size += stringSize(im.URL) + stringSize(im.Alt)
		}
		dst = appendLong(appendLong(dst, -int64(len(p.Images))), int64(size))
		for _, im := range p.Images {
			dst = appendString(dst, im.URL)
			dst = appendString(dst, im.Alt)
		}
	}
	dst = append(dst, 0)
	dst = appendLong(dst, int64(p.Stock))
	if len(p.Specifications) > 0 {
		dst = appendSortedMap(dst, p.Specifications)
	}
	dst = append(dst, 0)
	dst = appendLong(dst, p.CreatedAt.UnixMilli())
	dst = appendLong(dst, p.UpdatedAt.UnixMilli())
	return dst
}

// AppendKeyValue appends product index as a Kafka record would carry it: the
// key (mall_id/product_id), then header (the Confluent framing), then the
// Avro body that AppendProductAvro writes for Fill's product, byte for byte.
// It returns dst and the key's length. It builds no Product and allocates
// nothing when dst has room, so it is what the batch activity uses. Unlike
// Fill it only reads the generator, so goroutines may share one.
func (g *Generator) AppendKeyValue(dst []byte, index uint64, header []byte) ([]byte, int) {
	var d draw
	g.draw(&d, index)
	c := d.c
	start := len(dst)
	mall := g.malls[d.shop]
	dst = append(dst, mall...)
	dst = append(dst, '/')
	dst = g.appendProductID(dst, index)
	keyLen := len(dst) - start
	idLen := g.productIDLen(index)
	// Appending from dst to itself is fine even if it grows: the old
	// array stays valid while we copy from it.
	productID := dst[len(dst)-idLen:]
	dst = append(dst, header...)

	dst = appendLong(dst, int64(idLen))
	dst = append(dst, productID...)
	dst = appendString(dst, mall)
	dst = appendString(dst, d.name)
	dst = d.appendDescription(appendLong(dst, int64(d.descriptionLen())))
	dst = d.appendAmount(appendLong(dst, int64(d.amountLen())))
	dst = appendString(dst, g.mallCur[d.shop])
	dst = appendString(dst, c.name)
	dst = appendString(dst, c.brands[d.bi])
	dst = d.appendSKU(appendLong(dst, skuLen))

	tags := d.tags()
	size := 0
	for _, t := range tags {
		size += stringSize(t)
	}
	dst = appendLong(appendLong(dst, -int64(len(tags))), int64(size))
	for _, t := range tags {
		dst = appendString(dst, t)
	}
	dst = append(dst, 0)

	urlLen := len(g.imageURL) + idLen + len("-1.png")
	size = 0
	for i := 0; i < d.nImages; i++ {
		size += lenSize(urlLen) + lenSize(len(d.name)+len(", ")+len(views[i]))
	}
	dst = appendLong(appendLong(dst, -int64(d.nImages)), int64(size))
	for i := 0; i < d.nImages; i++ {
		dst = g.appendImageURL(appendLong(dst, int64(urlLen)), productID, i)
		dst = d.appendAlt(appendLong(dst, int64(len(d.name)+len(", ")+len(views[i]))), i)
	}
	dst = append(dst, 0)

	dst = appendLong(dst, int64(d.stock))
	size = c.specKeysSize
	for _, slot := range c.specSlots {
		size += stringSize(d.specValue(slot))
	}
	dst = appendLong(appendLong(dst, -int64(len(c.specSlots))), int64(size))
	for i, slot := range c.specSlots {
		dst = appendString(dst, c.specKeys[i])
		dst = appendString(dst, d.specValue(slot))
	}
	dst = append(dst, 0)
	dst = appendLong(dst, d.created)
	dst = appendLong(dst, d.updated)
	return dst, keyLen
}

// appendSortedMap writes the map's entries in key order; small maps, as
// products have, sort on the stack.
func appendSortedMap(dst []byte, m map[string]string) []byte {
	var small [16]string
	keys := small[:0]
	if len(m) > len(small) {
		keys = make([]string, 0, len(m))
	}
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ { // insertion sort: a handful of keys
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	size := 0
	for _, k := range keys {
		size += stringSize(k) + stringSize(m[k])
	}
	dst = appendLong(appendLong(dst, -int64(len(keys))), int64(size))
	for _, k := range keys {
		dst = appendString(dst, k)
		dst = appendString(dst, m[k])
	}
	return dst
}

// stringSize is how many bytes appendString writes for s.
func stringSize(s string) int { return lenSize(len(s)) }

// lenSize is how many bytes a string of n bytes takes: its length, then it.
func lenSize(n int) int {
	size := 1
	for u := uint64(n) << 1; u >= 0x80; u >>= 7 {
		size++
	}
	return size + n
}

func appendString(dst []byte, s string) []byte {
	return append(appendLong(dst, int64(len(s))), s...)
}

// appendLong writes a zig-zag varint, Avro's int and long.
func appendLong(dst []byte, v int64) []byte {
	u := uint64(v<<1) ^ uint64(v>>63)
	for u >= 0x80 {
		dst = append(dst, byte(u)|0x80)
		u >>= 7
	}
	return append(dst, byte(u))
}
