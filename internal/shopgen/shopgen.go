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

// Generator fills products. It keeps scratch space, so one goroutine uses
// one Generator.
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
}

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
		gc := genCategory{category: c}
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
	r := rng(mix(g.opts.Seed ^ mix(index+0x9e3779b97f4a7c15)))
	ci := r.intn(len(g.cats))
	c := &g.cats[ci]
	bi, ni, si := r.intn(len(c.brands)), r.intn(len(c.nouns)), r.intn(len(series))
	name := c.names[(bi*len(c.nouns)+ni)*len(series)+si]
	shop := r.intn(len(g.malls))
	color := colors[r.intn(len(colors))]
	cents := c.minCents + r.intn(c.maxCents-c.minCents+1)
	nImages := 1 + r.intn(3)

	// Every string that is not vocabulary is appended to one buffer, which
	// becomes one string; the fields are substrings of it.
	b := g.scratch[:0]
	b = append(b, g.prefix...)
	b = strconv.AppendUint(b, index, 10)
	idEnd := len(b)
	b = append(b, name...)
	b = append(b, " in "...)
	b = append(b, color...)
	b = append(b, ": "...)
	b = append(b, features[r.intn(len(features))]...)
	b = append(b, '.')
	descEnd := len(b)
	b = append(b, c.brandCodes[bi]...)
	b = append(b, '-')
	b = append(b, c.code...)
	b = append(b, '-')
	b = appendHex32(b, uint32(r.next()))
	skuEnd := len(b)
	b = strconv.AppendInt(b, int64(cents/100), 10)
	b = append(b, '.', byte('0'+cents%100/10), byte('0'+cents%10))
	amountEnd := len(b)
	var imgEnds [3][2]int
	for i := 0; i < nImages; i++ {
		b = append(b, g.imageURL...)
		b = append(b, b[:idEnd]...)
		b = append(b, '-', byte('1'+i))
		b = append(b, ".png"...)
		imgEnds[i][0] = len(b)
		b = append(b, name...)
		b = append(b, ", "...)
		b = append(b, views[i]...)
		imgEnds[i][1] = len(b)
	}
	g.scratch = b
	s := string(b)

	p.ProductID = s[:idEnd]
	p.MallID = g.malls[shop]
	p.Name = name
	p.Description = s[idEnd:descEnd]
	p.Price = records.Price{Amount: s[skuEnd:amountEnd], Currency: g.mallCur[shop]}
	p.Category = c.name
	p.Brand = c.brands[bi]
	p.SKU = s[descEnd:skuEnd]
	p.Tags = append(p.Tags[:0], c.name, c.nouns[ni], c.brandTags[bi])
	if l := r.intn(2 * len(labels)); l < len(labels) {
		p.Tags = append(p.Tags, labels[l])
	}
	p.Images = p.Images[:0]
	start := amountEnd
	for i := 0; i < nImages; i++ {
		p.Images = append(p.Images, records.Image{URL: s[start:imgEnds[i][0]], Alt: s[imgEnds[i][0]:imgEnds[i][1]]})
		start = imgEnds[i][1]
	}
	if r.intn(20) == 0 {
		p.Stock = 0 // out of stock, as some products are
	} else {
		p.Stock = int32(1 + r.intn(500))
	}
	if p.Specifications == nil {
		p.Specifications = make(map[string]string, 4)
	} else {
		clear(p.Specifications)
	}
	p.Specifications["color"] = color
	p.Specifications["warranty"] = warranties[r.intn(len(warranties))]
	for _, sp := range c.specs {
		p.Specifications[sp.key] = sp.values[r.intn(len(sp.values))]
	}
	const year = 365 * 24 * time.Hour / time.Millisecond
	created := g.nowMs - int64(r.intn(int(year)))
	updated := created + int64(r.intn(int(g.nowMs-created)+1))
	p.CreatedAt = time.UnixMilli(created).UTC()
	p.UpdatedAt = time.UnixMilli(updated).UTC()
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
