// Package shopgen generates the products that emulated shops publish. A
// product is a pure function of (seed, index, options): the same batch
// generated twice, by a retried activity on another worker, has the same keys
// and the same content. Generation is cheap enough that Kafka, not the
// generator, limits how fast `shopstream emulate` runs.
package shopgen

import (
	"fmt"
	"hash/fnv"
	"math/bits"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shopstream/shopstream/internal/records"
)

// DefaultImageBaseURL is where the embedded stack's image collector serves
// /images/{name}.png.
const DefaultImageBaseURL = "http://127.0.0.1:8080/images"

// MaxShops bounds --shops; mall ids are built once per generator.
const MaxShops = 100_000

// Options shape the products; everything but Seed has a default.
type Options struct {
	// Seed makes the products; the same seed and index give the same product.
	Seed uint64
	// Shops is how many malls the products are spread over (default 10).
	Shops int
	// ImageBaseURL prefixes every image URL (default DefaultImageBaseURL).
	ImageBaseURL string
	// Now anchors created_at and updated_at: both fall in the year before it.
	Now time.Time
}

// Generator makes products. Fill keeps scratch space, so one goroutine
// fills with one Generator; AppendKeyValue may be called concurrently.
type Generator struct {
	opts     Options
	prefix   string // product id prefix: the seed's first 32 bits in hex and a dash
	malls    []string
	mallCur  []string // each mall's currency
	cats     []genCategory
	nowMs    int64
	imageURL string // base URL with a trailing slash
	scratch  []byte
}

type genCategory struct {
	category
	names      []string // brand x noun x series, precomputed so a name costs nothing
	brandCodes []string
	brandTags  []string
	// The specifications in key order (as Avro maps are written here):
	// their keys, which value each is (specColor, specWarranty, or
	// specOwn+i for the category's own spec i), and the keys' encoded size.
	specKeys     []string
	specSlots    []int
	specKeysSize int
}

// Slots of the specifications every product has; a category's own follow.
const (
	specColor = iota
	specWarranty
	specOwn
)

// New builds a generator; it rejects options a user could get wrong.
func New(o Options) (*Generator, error) {
	if o.Shops == 0 {
		o.Shops = 10
	}
	if o.Shops < 1 || o.Shops > MaxShops {
		return nil, fmt.Errorf("shops %d: want 1 to %d", o.Shops, MaxShops)
	}
	if o.ImageBaseURL == "" {
		o.ImageBaseURL = DefaultImageBaseURL
	}
	if err := CheckImageBaseURL(o.ImageBaseURL); err != nil {
		return nil, err
	}
	if o.Now.IsZero() {
		return nil, fmt.Errorf("options.Now is zero: the generator needs a fixed time to anchor created_at")
	}
	g := &Generator{
		opts:     o,
		prefix:   fmt.Sprintf("%08x-", uint32(o.Seed>>32)^uint32(o.Seed)),
		malls:    make([]string, o.Shops),
		mallCur:  make([]string, o.Shops),
		nowMs:    o.Now.UnixMilli(),
		imageURL: strings.TrimRight(o.ImageBaseURL, "/") + "/",
		scratch:  make([]byte, 0, 1024),
	}
	for i := range g.malls {
		g.malls[i] = fmt.Sprintf("mall-%03d", i+1)
		g.mallCur[i] = currencies[mix(o.Seed^uint64(i))%uint64(len(currencies))]
	}
	g.cats = make([]genCategory, len(catalogue))
	for ci, c := range catalogue {
		if len(c.specs) > maxSpecs {
			return nil, fmt.Errorf("category %s has %d specifications, at most %d fit", c.name, len(c.specs), maxSpecs)
		}
		gc := genCategory{category: c}
		gc.specKeys = []string{"color", "warranty"}
		gc.specSlots = []int{specColor, specWarranty}
		for i, sp := range c.specs {
			gc.specKeys = append(gc.specKeys, sp.key)
			gc.specSlots = append(gc.specSlots, specOwn+i)
		}
		sort.Sort(bySpecKey{&gc})
		for _, k := range gc.specKeys {
			gc.specKeysSize += stringSize(k)
		}
		for _, b := range c.brands {
			gc.brandCodes = append(gc.brandCodes, brandCode(b))
			gc.brandTags = append(gc.brandTags, strings.ToLower(b))
			for _, n := range c.nouns {
				for _, s := range series {
					gc.names = append(gc.names, b+" "+n+" "+s)
				}
			}
		}
		g.cats[ci] = gc
	}
	return g, nil
}

// bySpecKey sorts a category's specification keys and slots together.
type bySpecKey struct{ c *genCategory }

func (s bySpecKey) Len() int           { return len(s.c.specKeys) }
func (s bySpecKey) Less(i, j int) bool { return s.c.specKeys[i] < s.c.specKeys[j] }
func (s bySpecKey) Swap(i, j int) {
	s.c.specKeys[i], s.c.specKeys[j] = s.c.specKeys[j], s.c.specKeys[i]
	s.c.specSlots[i], s.c.specSlots[j] = s.c.specSlots[j], s.c.specSlots[i]
}

// CheckImageBaseURL accepts an absolute http(s) URL.
func CheckImageBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("image base URL %q: want an http:// or https:// URL such as %s", s, DefaultImageBaseURL)
	}
	return nil
}

// SeedOf derives a seed from a string such as a workflow id (FNV-1a), so a
// run without --seed still generates the same products on every retry.
func SeedOf(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// Names lists every product name the generator can produce.
func (g *Generator) Names() []string {
	var out []string
	for _, c := range g.cats {
		out = append(out, c.names...)
	}
	return out
}

// Product returns product index as a fresh value.
func (g *Generator) Product(index uint64) records.Product {
	var p records.Product
	g.Fill(&p, index)
	return p
}

// Fill overwrites p with product index. It reuses p's Tags, Images and
// Specifications storage, so a caller that encodes p before the next Fill
// pays one allocation per product (the strings that are not vocabulary);
// strings set by earlier calls stay valid.
func (g *Generator) Fill(p *records.Product, index uint64) {
	var d draw
	g.draw(&d, index)
	c := d.c

	// Every string that is not vocabulary is appended to one buffer, which
	// becomes one string; the fields are substrings of it.
	b := g.scratch[:0]
	b = g.appendProductID(b, index)
	idEnd := len(b)
	b = d.appendDescription(b)
	descEnd := len(b)
	b = d.appendSKU(b)
	skuEnd := len(b)
	b = d.appendAmount(b)
	amountEnd := len(b)
	var imgEnds [3][2]int
	for i := 0; i < d.nImages; i++ {
		b = g.appendImageURL(b, b[:idEnd], i)
		imgEnds[i][0] = len(b)
		b = d.appendAlt(b, i)
		imgEnds[i][1] = len(b)
	}
	g.scratch = b
	s := string(b)

	p.ProductID = s[:idEnd]
	p.MallID = g.malls[d.shop]
	p.Name = d.name
	p.Description = s[idEnd:descEnd]
	p.Price = records.Price{Amount: s[skuEnd:amountEnd], Currency: g.mallCur[d.shop]}
	p.Category = c.name
	p.Brand = c.brands[d.bi]
	p.SKU = s[descEnd:skuEnd]
	p.Tags = append(p.Tags[:0], d.tags()...)
	p.Images = p.Images[:0]
	start := amountEnd
	for i := 0; i < d.nImages; i++ {
		p.Images = append(p.Images, records.Image{URL: s[start:imgEnds[i][0]], Alt: s[imgEnds[i][0]:imgEnds[i][1]]})
		start = imgEnds[i][1]
	}
	p.Stock = d.stock
	if p.Specifications == nil {
		p.Specifications = make(map[string]string, 2+len(c.specs))
	} else {
		clear(p.Specifications)
	}
	p.Specifications["color"] = d.color
	p.Specifications["warranty"] = d.warranty
	for i, sp := range c.specs {
		p.Specifications[sp.key] = d.specs[i]
	}
	p.CreatedAt = time.UnixMilli(d.created).UTC()
	p.UpdatedAt = time.UnixMilli(d.updated).UTC()
}

// maxSpecs bounds a category's own specifications.
const maxSpecs = 4

// draw is every random choice that makes one product; Fill and
// AppendKeyValue turn it into the same product.
type draw struct {
	c                *genCategory
	bi, ni           int
	name             string
	shop             int
	color            string
	cents            int
	nImages          int
	feature          string
	sku              uint32
	label            string // "" for none
	stock            int32
	warranty         string
	specs            [maxSpecs]string
	created, updated int64
	tagBuf           [4]string
}

func (g *Generator) draw(d *draw, index uint64) {
	r := rng(mix(g.opts.Seed ^ mix(index+0x9e3779b97f4a7c15)))
	d.label = ""
	d.c = &g.cats[r.intn(len(g.cats))]
	c := d.c
	var si int
	d.bi, d.ni, si = r.intn(len(c.brands)), r.intn(len(c.nouns)), r.intn(len(series))
	d.name = c.names[(d.bi*len(c.nouns)+d.ni)*len(series)+si]
	d.shop = r.intn(len(g.malls))
	d.color = colors[r.intn(len(colors))]
	d.cents = c.minCents + r.intn(c.maxCents-c.minCents+1)
	d.nImages = 1 + r.intn(3)
	d.feature = features[r.intn(len(features))]
	d.sku = uint32(r.next())
	if l := r.intn(2 * len(labels)); l < len(labels) {
		d.label = labels[l]
	}
	if r.intn(20) == 0 {
		d.stock = 0 // out of stock, as some products are
	} else {
		d.stock = int32(1 + r.intn(500))
	}
	d.warranty = warranties[r.intn(len(warranties))]
	for i, sp := range c.specs {
		d.specs[i] = sp.values[r.intn(len(sp.values))]
	}
	const year = 365 * 24 * time.Hour / time.Millisecond
	d.created = g.nowMs - int64(r.intn(int(year)))
	d.updated = d.created + int64(r.intn(int(g.nowMs-d.created)+1))
}

func (d *draw) tags() []string {
	t := append(d.tagBuf[:0], d.c.name, d.c.nouns[d.ni], d.c.brandTags[d.bi])
	if d.label != "" {
		t = append(t, d.label)
	}
	return t
}

// specValue returns the value of the i-th specification in key order.
func (d *draw) specValue(slot int) string {
	switch slot {
	case specColor:
		return d.color
	case specWarranty:
		return d.warranty
	}
	return d.specs[slot-specOwn]
}

func (g *Generator) appendProductID(b []byte, index uint64) []byte {
	return strconv.AppendUint(append(b, g.prefix...), index, 10)
}

func (g *Generator) productIDLen(index uint64) int {
	return len(g.prefix) + decimalDigits(index)
}

func (d *draw) appendDescription(b []byte) []byte {
	b = append(b, d.name...)
	b = append(b, " in "...)
	b = append(b, d.color...)
	b = append(b, ": "...)
	b = append(b, d.feature...)
	return append(b, '.')
}

func (d *draw) descriptionLen() int {
	return len(d.name) + len(" in ") + len(d.color) + len(": ") + len(d.feature) + 1
}

func (d *draw) appendSKU(b []byte) []byte {
	b = append(b, d.c.brandCodes[d.bi]...)
	b = append(b, '-')
	b = append(b, d.c.code...)
	b = append(b, '-')
	return appendHex32(b, d.sku)
}

const skuLen = 3 + 1 + 3 + 1 + 8

func (d *draw) appendAmount(b []byte) []byte {
	b = strconv.AppendInt(b, int64(d.cents/100), 10)
	return append(b, '.', byte('0'+d.cents%100/10), byte('0'+d.cents%10))
}

func (d *draw) amountLen() int {
	return decimalDigits(uint64(d.cents/100)) + 3
}

func (g *Generator) appendImageURL(b, productID []byte, i int) []byte {
	b = append(b, g.imageURL...)
	b = append(b, productID...)
	b = append(b, '-', byte('1'+i))
	return append(b, ".png"...)
}

func (d *draw) appendAlt(b []byte, i int) []byte {
	b = append(b, d.name...)
	b = append(b, ", "...)
	return append(b, views[i]...)
}

func decimalDigits(v uint64) int {
	n := 1
	for v >= 10 {
		v /= 10
		n++
	}
	return n
}

// rng is splitmix64: tiny, fast, and good enough to pick vocabulary.
type rng uint64

func (r *rng) next() uint64 {
	*r += 0x9e3779b97f4a7c15
	return mix(uint64(*r))
}

// intn returns a number in [0, n) by Lemire's multiply-shift.
func (r *rng) intn(n int) int {
	hi, _ := bits.Mul64(r.next(), uint64(n))
	return int(hi)
}

func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

const hexDigits = "0123456789ABCDEF"

func appendHex32(b []byte, v uint32) []byte {
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, hexDigits[v>>uint(shift)&0xf])
	}
	return b
}

// brandCode is the first three letters of a brand, upper-cased, for SKUs.
func brandCode(brand string) string {
	var b []byte
	for _, r := range strings.ToUpper(brand) {
		if r >= 'A' && r <= 'Z' {
			b = append(b, byte(r))
			if len(b) == 3 {
				break
			}
		}
	}
	for len(b) < 3 {
		b = append(b, 'X')
	}
	return string(b)
}
