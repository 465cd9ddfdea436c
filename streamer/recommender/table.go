package recommender

import (
	"hash/maphash"
	"strings"
	"sync"
	"unsafe"

	"github.com/shopstream/shopstream/internal/records"
)

// Product is what the table keeps of a filtered product: only what a
// recommendation shows. Lookup and Get return copies the caller owns.
type Product struct {
	// Key is the record key, "mall_id/product_id".
	Key       string
	MallID    string
	ProductID string
	Name      string
	Price     records.Price
}

// Table holds the filtered products by record key and by normalised name.
// It is safe for one writer and many readers at once.
//
// A million products must not cost the garbage collector a million objects
// to scan on every cycle, which it would with a map of *Product (that
// layout spent 40% of the join benchmark's CPU in the collector). So every
// string lives in one append-only byte arena, each product is a
// pointer-free slot addressing it, and both indexes map a 64-bit hash to a
// slot, with collisions chained through the slots and resolved by comparing
// the bytes. The collector sees a few large pointer-free arrays.
type Table struct {
	mu    sync.RWMutex
	seed  maphash.Seed
	arena []byte
	slots []slot
	free  []int32
	// byKey chains slots whose keys share a hash; byName chains slots
	// whose normalised names share a hash, ordered by key.
	byKey  map[uint64]int32
	byName map[uint64]int32
	// products and names count live products and distinct names.
	products, names int
	// garbage counts arena bytes no live slot refers to; the arena is
	// compacted when they outweigh the live ones.
	garbage int
	// currencies interns currency codes: a million products share a few.
	currencies map[string]span
}

// span is a string in the arena.
type span struct{ off, n uint32 }

type slot struct {
	key, mall, product, name, norm, amount, currency span
	nextKey, nextName                                int32 // -1 ends a chain
	live                                             bool
	// idsInKey: mall and product are the two halves of key.
	idsInKey bool
}

const none = -1

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{
		seed:       maphash.MakeSeed(),
		byKey:      make(map[uint64]int32),
		byName:     make(map[uint64]int32),
		currencies: make(map[string]span),
	}
}

// str views arena bytes as a string without copying; only for use while
// the lock is held (the arena is append-only, but compaction replaces it).
func (t *Table) str(s span) string {
	if s.n == 0 {
		return ""
	}
	return unsafe.String(&t.arena[s.off], int(s.n))
}

func (t *Table) add(s string) span {
	sp := span{uint32(len(t.arena)), uint32(len(s))}
	t.arena = append(t.arena, s...)
	return sp
}

func (t *Table) hash(s string) uint64 { return maphash.String(t.seed, s) }

// Upsert inserts the product under key, or replaces the one there; a renamed
// product moves from its old name to its new one.
func (t *Table) Upsert(key string, p *records.Product) {
	norm := Normalize(p.Name)
	t.mu.Lock()
	defer t.mu.Unlock()
	if i := t.find(key); i != none {
		t.remove(i)
		t.maybeCompact()
	}
	var s slot
	s.key = t.add(key)
	// The key is normally mall_id/product_id: share its bytes.
	if len(key) == len(p.MallID)+1+len(p.ProductID) && strings.HasPrefix(key, p.MallID) && key[len(p.MallID)] == '/' && strings.HasSuffix(key, p.ProductID) {
		s.mall = span{s.key.off, uint32(len(p.MallID))}
		s.product = span{s.key.off + uint32(len(p.MallID)) + 1, uint32(len(p.ProductID))}
		s.idsInKey = true
	} else {
		s.mall, s.product = t.add(p.MallID), t.add(p.ProductID)
	}
	s.name = t.add(p.Name)
	s.norm = s.name
	if norm != p.Name {
		s.norm = t.add(norm)
	}
	s.amount = t.add(p.Price.Amount)
	s.currency = t.intern(p.Price.Currency)
	s.live = true

	var i int32
	if n := len(t.free); n > 0 {
		i, t.free = t.free[n-1], t.free[:n-1]
		t.slots[i] = s
	} else {
		i = int32(len(t.slots))
		t.slots = append(t.slots, s)
	}
	kh := t.hash(key)
	t.slots[i].nextKey = none
	if head, ok := t.byKey[kh]; ok {
		t.slots[i].nextKey = head
	}
	t.byKey[kh] = i
	t.linkName(i, norm)
	t.products++
}

// Delete removes the product under key and reports whether there was one.
func (t *Table) Delete(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := t.find(key)
	if i == none {
		return false
	}
	t.remove(i)
	t.maybeCompact()
	return true
}

// Lookup appends to dst the products whose normalised name is norm (which
// must already be normalised), ordered by key.
func (t *Table) Lookup(dst []Product, norm string) []Product {
	t.mu.RLock()
	defer t.mu.RUnlock()
	i, ok := t.byName[t.hash(norm)]
	if !ok {
		return dst
	}
	for ; i != none; i = t.slots[i].nextName {
		if t.str(t.slots[i].norm) == norm {
			dst = append(dst, t.product(i))
		}
	}
	return dst
}

// Get returns the product under key.
func (t *Table) Get(key string) (Product, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	i := t.find(key)
	if i == none {
		return Product{}, false
	}
	return t.product(i), true
}

// Len returns the number of products and of distinct normalised names.
func (t *Table) Len() (products, names int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.products, t.names
}

// product copies slot i out of the arena, in one allocation.
func (t *Table) product(i int32) Product {
	s := &t.slots[i]
	parts := [...]span{s.key, s.name, s.amount, s.currency}
	n := 0
	for _, p := range parts {
		n += int(p.n)
	}
	buf := make([]byte, 0, n)
	var out [4]string
	for j, p := range parts {
		start := len(buf)
		buf = append(buf, t.str(p)...)
		out[j] = unsafe.String(unsafe.SliceData(buf[start:]), len(buf)-start)
	}
	prod := Product{Key: out[0], Name: out[1], Price: records.Price{Amount: out[2], Currency: out[3]}}
	if s.idsInKey {
		prod.MallID = prod.Key[s.mall.off-s.key.off:][:s.mall.n]
		prod.ProductID = prod.Key[s.product.off-s.key.off:][:s.product.n]
	} else {
		prod.MallID, prod.ProductID = strings.Clone(t.str(s.mall)), strings.Clone(t.str(s.product))
	}
	return prod
}

func (t *Table) find(key string) int32 {
	i, ok := t.byKey[t.hash(key)]
	if !ok {
		return none
	}
	for ; i != none; i = t.slots[i].nextKey {
		if t.str(t.slots[i].key) == key {
			return i
		}
	}
	return none
}

// remove takes slot i out of both indexes and frees it.
func (t *Table) remove(i int32) {
	s := &t.slots[i]
	kh := t.hash(t.str(s.key))
	if head := t.byKey[kh]; head == i {
		if s.nextKey == none {
			delete(t.byKey, kh)
		} else {
			t.byKey[kh] = s.nextKey
		}
	} else {
		for j := head; j != none; j = t.slots[j].nextKey {
			if t.slots[j].nextKey == i {
				t.slots[j].nextKey = s.nextKey
				break
			}
		}
	}
	t.unlinkName(i)
	t.garbage += t.slotBytes(s)
	*s = slot{nextKey: none, nextName: none}
	t.free = append(t.free, i)
	t.products--
}

// linkName puts slot i into its name's chain, keeping the chain ordered by
// key, and counts the name if it is new.
func (t *Table) linkName(i int32, norm string) {
	nh := t.hash(norm)
	key := t.str(t.slots[i].key)
	t.slots[i].nextName = none
	head, ok := t.byName[nh]
	if !t.hasName(head, ok, norm) {
		t.names++
	}
	if !ok || key < t.str(t.slots[head].key) {
		if ok {
			t.slots[i].nextName = head
		}
		t.byName[nh] = i
		return
	}
	prev := head
	for next := t.slots[prev].nextName; next != none && t.str(t.slots[next].key) < key; next = t.slots[prev].nextName {
		prev = next
	}
	t.slots[i].nextName = t.slots[prev].nextName
	t.slots[prev].nextName = i
}

func (t *Table) unlinkName(i int32) {
	norm := t.str(t.slots[i].norm)
	nh := t.hash(norm)
	head := t.byName[nh]
	if head == i {
		if t.slots[i].nextName == none {
			delete(t.byName, nh)
		} else {
			t.byName[nh] = t.slots[i].nextName
		}
	} else {
		for j := head; j != none; j = t.slots[j].nextName {
			if t.slots[j].nextName == i {
				t.slots[j].nextName = t.slots[i].nextName
				break
			}
		}
	}
	head, ok := t.byName[nh]
	if !t.hasName(head, ok, norm) {
		t.names--
	}
}

func (t *Table) hasName(head int32, ok bool, norm string) bool {
	if !ok {
		return false
	}
	for j := head; j != none; j = t.slots[j].nextName {
		if t.str(t.slots[j].norm) == norm {
			return true
		}
	}
	return false
}

func (t *Table) intern(c string) span {
	if sp, ok := t.currencies[c]; ok {
		return sp
	}
	sp := t.add(c)
	if len(t.currencies) < 1024 { // a hostile feed cannot grow it forever
		t.currencies[strings.Clone(c)] = sp
	}
	return sp
}

// slotBytes is how many arena bytes slot s alone holds (interned
// currencies and shared parts not counted).
func (t *Table) slotBytes(s *slot) int {
	n := int(s.key.n + s.name.n + s.amount.n)
	if s.norm != s.name {
		n += int(s.norm.n)
	}
	if !s.idsInKey {
		n += int(s.mall.n + s.product.n)
	}
	return n
}

// maybeCompact copies the live strings into a fresh arena once most of the
// arena is garbage (updates and deletes leave their old strings behind).
func (t *Table) maybeCompact() {
	if t.garbage < 1<<20 || t.garbage < len(t.arena)/2 {
		return
	}
	old := t.arena
	t.arena = make([]byte, 0, len(old)-t.garbage+len(old)/8)
	move := func(s span) span { return t.add(unsafe.String(unsafe.SliceData(old[s.off:]), int(s.n))) }
	interned := make(map[string]span, len(t.currencies))
	for c := range t.currencies {
		interned[c] = t.add(c)
	}
	for i := range t.slots {
		s := &t.slots[i]
		if !s.live {
			continue
		}
		mallOff, productOff := s.mall.off-s.key.off, s.product.off-s.key.off
		sameNorm := s.norm == s.name
		s.key = move(s.key)
		if s.idsInKey {
			s.mall.off, s.product.off = s.key.off+mallOff, s.key.off+productOff
		} else {
			s.mall, s.product = move(s.mall), move(s.product)
		}
		s.name = move(s.name)
		if sameNorm {
			s.norm = s.name
		} else {
			s.norm = move(s.norm)
		}
		s.amount = move(s.amount)
		if sp, ok := interned[unsafe.String(unsafe.SliceData(old[s.currency.off:]), int(s.currency.n))]; ok {
			s.currency = sp
		} else {
			s.currency = move(s.currency)
		}
	}
	t.currencies = interned
	t.garbage = 0
}
