package recommender

import (
	"strings"
	"sync"

	"github.com/shopstream/shopstream/internal/records"
)

// Product is what the table keeps of a filtered product: only what a
// recommendation shows. Its exported fields never change once it is in the
// table (an update replaces the whole Product), so a caller may keep one
// after the lookup returns.
type Product struct {
	// Key is the record key, "mall_id/product_id".
	Key       string
	MallID    string
	ProductID string
	Name      string
	Price     records.Price

	norm string
	next *Product // the next product with the same normalised name, by Key
}

// Table holds the filtered products by record key and by normalised name.
// It is safe for one writer and many readers at once.
type Table struct {
	mu     sync.RWMutex
	byKey  map[string]*Product
	byName map[string]*Product // head of a chain ordered by Key
	// currencies interns currency codes: a million products share a few.
	currencies map[string]string
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{
		byKey:      make(map[string]*Product),
		byName:     make(map[string]*Product),
		currencies: make(map[string]string),
	}
}

// Upsert inserts the product under key, or replaces the one there; a renamed
// product moves from its old name to its new one.
func (t *Table) Upsert(key string, p *records.Product) {
	np := &Product{Key: key, Name: p.Name, norm: Normalize(p.Name)}
	// The key is normally mall_id/product_id: share its bytes.
	if len(key) == len(p.MallID)+1+len(p.ProductID) && strings.HasPrefix(key, p.MallID) && key[len(p.MallID)] == '/' {
		np.MallID, np.ProductID = key[:len(p.MallID)], key[len(p.MallID)+1:]
	} else {
		np.MallID, np.ProductID = p.MallID, p.ProductID
	}
	if np.norm == p.Name {
		np.Name = np.norm // share the bytes
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	np.Price = records.Price{Amount: p.Price.Amount, Currency: t.intern(p.Price.Currency)}
	if old, ok := t.byKey[key]; ok {
		t.unlink(old)
	}
	t.byKey[key] = np
	t.link(np)
}

// Delete removes the product under key and reports whether there was one.
func (t *Table) Delete(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.byKey[key]
	if !ok {
		return false
	}
	t.unlink(old)
	delete(t.byKey, key)
	return true
}

// Lookup appends to dst the products whose normalised name is norm (which
// must already be normalised), ordered by key.
func (t *Table) Lookup(dst []*Product, norm string) []*Product {
	t.mu.RLock()
	for p := t.byName[norm]; p != nil; p = p.next {
		dst = append(dst, p)
	}
	t.mu.RUnlock()
	return dst
}

// Get returns the product under key.
func (t *Table) Get(key string) (*Product, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	p, ok := t.byKey[key]
	return p, ok
}

// Len returns the number of products and of distinct normalised names.
func (t *Table) Len() (products, names int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.byKey), len(t.byName)
}

func (t *Table) intern(s string) string {
	if v, ok := t.currencies[s]; ok {
		return v
	}
	if len(t.currencies) < 1024 { // a hostile feed cannot grow it forever
		t.currencies[s] = s
	}
	return s
}

// link puts p into its name's chain, keeping the chain ordered by key.
func (t *Table) link(p *Product) {
	head := t.byName[p.norm]
	if head == nil || p.Key < head.Key {
		p.next = head
		t.byName[p.norm] = p
		return
	}
	prev := head
	for prev.next != nil && prev.next.Key < p.Key {
		prev = prev.next
	}
	p.next = prev.next
	prev.next = p
}

// unlink takes p out of its name's chain.
func (t *Table) unlink(p *Product) {
	head := t.byName[p.norm]
	if head == p {
		if p.next == nil {
			delete(t.byName, p.norm)
		} else {
			t.byName[p.norm] = p.next
		}
		return
	}
	for prev := head; prev != nil; prev = prev.next {
		if prev.next == p {
			prev.next = p.next
			return
		}
	}
}
