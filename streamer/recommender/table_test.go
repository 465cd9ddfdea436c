package recommender

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shopstream/shopstream/internal/records"
)

func product(mall, id, name, amount string) *records.Product {
	return &records.Product{MallID: mall, ProductID: id, Name: name, Price: records.Price{Amount: amount, Currency: "USD"}}
}

// keys lists the keys of the products the table matches for a prompt.
func keys(t *Table, prompt string) string {
	var out []string
	for _, p := range t.Lookup(nil, Normalize(prompt)) {
		out = append(out, p.Key+"="+p.Name+"@"+p.Price.Amount)
	}
	return strings.Join(out, ",")
}

func TestTable(t *testing.T) {
	type op struct {
		key  string
		p    *records.Product // nil: a tombstone
		want map[string]string
		size [2]int
	}
	tbl := NewTable()
	for i, o := range []op{
		{"m1/p1", product("m1", "p1", "Galaxy Phone", "10"),
			map[string]string{"galaxy phone": "m1/p1=Galaxy Phone@10", "GALAXY  PHONE ": "m1/p1=Galaxy Phone@10", "galaxy": ""}, [2]int{1, 1}},
		// A second product with the same normalised name: both match, by key.
		{"m0/p9", product("m0", "p9", "galaxy   PHONE", "12"),
			map[string]string{"galaxy phone": "m0/p9=galaxy   PHONE@12,m1/p1=Galaxy Phone@10"}, [2]int{2, 1}},
		// An update of the price keeps the name and the order.
		{"m1/p1", product("m1", "p1", "Galaxy Phone", "11"),
			map[string]string{"galaxy phone": "m0/p9=galaxy   PHONE@12,m1/p1=Galaxy Phone@11"}, [2]int{2, 1}},
		// A rename moves the product to its new name.
		{"m1/p1", product("m1", "p1", "Pixel Phone", "11"),
			map[string]string{"galaxy phone": "m0/p9=galaxy   PHONE@12", "pixel phone": "m1/p1=Pixel Phone@11"}, [2]int{2, 2}},
		// A middle-of-chain insert and delete.
		{"m0/p95", product("m0", "p95", "Galaxy Phone", "13"),
			map[string]string{"galaxy phone": "m0/p9=galaxy   PHONE@12,m0/p95=Galaxy Phone@13"}, [2]int{3, 2}},
		{"m0/p9", nil,
			map[string]string{"galaxy phone": "m0/p95=Galaxy Phone@13", "pixel phone": "m1/p1=Pixel Phone@11"}, [2]int{2, 2}},
		// Deleting the last product of a name removes the name.
		{"m1/p1", nil,
			map[string]string{"pixel phone": ""}, [2]int{1, 1}},
		// Deleting what is not there changes nothing.
		{"m9/p9", nil,
			map[string]string{"galaxy phone": "m0/p95=Galaxy Phone@13"}, [2]int{1, 1}},
		// Reinserting a deleted key brings it back.
		{"m1/p1", product("m1", "p1", "Galaxy Phone", "14"),
			map[string]string{"galaxy phone": "m0/p95=Galaxy Phone@13,m1/p1=Galaxy Phone@14"}, [2]int{2, 1}},
	} {
		if o.p == nil {
			tbl.Delete(o.key)
		} else {
			tbl.Upsert(o.key, o.p)
		}
		for prompt, want := range o.want {
			if got := keys(tbl, prompt); got != want {
				t.Errorf("#%d: lookup %q = %q, want %q", i, prompt, got, want)
			}
		}
		if p, n := tbl.Len(); p != o.size[0] || n != o.size[1] {
			t.Errorf("#%d: table holds %d products under %d names, want %d under %d", i, p, n, o.size[0], o.size[1])
		}
	}
}

func TestTableKeepsIDsFromTheValue(t *testing.T) {
	tbl := NewTable()
	tbl.Upsert("m1/p1", product("m1", "p1", "x", "1"))
	tbl.Upsert("odd-key", product("m2", "p2", "y", "2"))
	tbl.Upsert("x", product("", "p", "z", "3"))
	tbl.Upsert("/", product("", "", "w", "4"))
	for i, c := range []struct{ key, mall, id string }{{"m1/p1", "m1", "p1"}, {"odd-key", "m2", "p2"}, {"x", "", "p"}, {"/", "", ""}} {
		p, ok := tbl.Get(c.key)
		if !ok || p.MallID != c.mall || p.ProductID != c.id {
			t.Errorf("#%d: Get(%q) = %+v, %v; want mall %s product %s", i, c.key, p, ok, c.mall, c.id)
		}
	}
}

func TestTableChainOrderUnderManyUpdates(t *testing.T) {
	tbl := NewTable()
	// Insert in reverse, delete every third, rename every fifth away.
	for i := 99; i >= 0; i-- {
		tbl.Upsert(fmt.Sprintf("m/%03d", i), product("m", fmt.Sprintf("%03d", i), "Same Name", "1"))
	}
	want := 0
	for i := 0; i < 100; i++ {
		switch {
		case i%3 == 0:
			tbl.Delete(fmt.Sprintf("m/%03d", i))
		case i%5 == 0:
			tbl.Upsert(fmt.Sprintf("m/%03d", i), product("m", fmt.Sprintf("%03d", i), "Other", "1"))
		default:
			want++
		}
	}
	got := tbl.Lookup(nil, "same name")
	if len(got) != want {
		t.Fatalf("lookup found %d products, want %d", len(got), want)
	}
	for i := 1; i < len(got); i++ {
		if got[i-1].Key >= got[i].Key {
			t.Fatalf("chain out of order at %d: %s then %s", i, got[i-1].Key, got[i].Key)
		}
	}
}

// Updates and deletes leave garbage in the arena; compaction must keep
// every live product intact.
func TestTableCompaction(t *testing.T) {
	tbl := NewTable()
	long := strings.Repeat("x", 200)
	for round := range 30 {
		for i := range 1000 {
			key := fmt.Sprintf("m%d/p%d", i%7, i)
			if i%3 == 0 && round%2 == 1 {
				tbl.Delete(key)
				continue
			}
			p := product(fmt.Sprintf("m%d", i%7), fmt.Sprintf("p%d", i), fmt.Sprintf("Name %d %s round %d", i%50, long, round), fmt.Sprint(round))
			if i%5 == 0 {
				p.MallID = "elsewhere" // a key that is not mall/product
			}
			p.Price.Currency = []string{"USD", "EUR", fmt.Sprintf("X%d", i)}[i%3]
			tbl.Upsert(key, p)
		}
	}
	if len(tbl.arena) > 4<<20 {
		t.Errorf("arena holds %d bytes after 30 rounds over 1000 products: not compacted", len(tbl.arena))
	}
	products, _ := tbl.Len()
	seen := 0
	for i := range 1000 {
		key := fmt.Sprintf("m%d/p%d", i%7, i)
		got, ok := tbl.Get(key)
		if i%3 == 0 { // deleted in the last (odd) round
			if ok {
				t.Errorf("%s survived its delete", key)
			}
			continue
		}
		seen++
		mall := fmt.Sprintf("m%d", i%7)
		if i%5 == 0 {
			mall = "elsewhere"
		}
		want := Product{Key: key, MallID: mall, ProductID: fmt.Sprintf("p%d", i), Name: fmt.Sprintf("Name %d %s round %d", i%50, long, 29),
			Price: records.Price{Amount: "29", Currency: []string{"USD", "EUR", fmt.Sprintf("X%d", i)}[i%3]}}
		if !ok || got != want {
			t.Fatalf("%s = %+v, want %+v", key, got, want)
		}
		if n := len(tbl.Lookup(nil, Normalize(want.Name))); n < 1 {
			t.Fatalf("%s not found by its name", key)
		}
	}
	if products != seen {
		t.Errorf("Len says %d products, %d found", products, seen)
	}
}
