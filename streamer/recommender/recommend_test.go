package recommender

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/records"
)

func prompt(user, search, query string, at int64) *records.SearchPrompt {
	return &records.SearchPrompt{SearchID: search, UserID: user, Query: query, SearchedAt: time.UnixMilli(at).UTC()}
}

func list(r *records.Recommendation) string {
	var out []string
	for _, p := range r.Products {
		out = append(out, fmt.Sprintf("%s/%s:%s@%d", p.MallID, p.ProductID, p.SearchID, p.RecommendedAt.UnixMilli()))
	}
	return strings.Join(out, " ")
}

func TestApply(t *testing.T) {
	tbl := NewTable()
	tbl.Upsert("m1/p1", product("m1", "p1", "Galaxy Phone", "10"))
	tbl.Upsert("m2/p1", product("m2", "p1", "Galaxy Phone", "9"))
	tbl.Upsert("m1/p2", product("m1", "p2", "Pixel", "8"))
	tbl.Upsert("m1/p3", product("m1", "p3", "Pixel Pro", "7"))

	var r *records.Recommendation
	for i, c := range []struct {
		p    *records.SearchPrompt
		want string
	}{
		{prompt("u", "s1", "galaxy phone", 100), "m1/p1:s1@100 m2/p1:s1@100"},
		{prompt("u", "s2", "nothing like it", 200), "m1/p1:s1@100 m2/p1:s1@100"},
		{prompt("u", "s3", " PIXEL ", 300), "m1/p2:s3@300 m1/p1:s1@100 m2/p1:s1@100"},
		// Searching again moves the products to the front, once each.
		{prompt("u", "s4", "Galaxy  Phone", 400), "m1/p1:s4@400 m2/p1:s4@400 m1/p2:s3@300"},
		// A late prompt (older searched_at) sorts into place...
		{prompt("u", "s5", "pixel pro", 250), "m1/p1:s4@400 m2/p1:s4@400 m1/p2:s3@300 m1/p3:s5@250"},
		// ...and does not replace a newer recommendation of the same product.
		{prompt("u", "s6", "pixel", 200), "m1/p1:s4@400 m2/p1:s4@400 m1/p2:s3@300 m1/p3:s5@250"},
	} {
		prev := r
		var before string
		if prev != nil {
			before = list(prev)
		}
		r = Apply(prev, c.p, tbl.Lookup(nil, Normalize(c.p.Query)))
		if got := list(r); got != c.want {
			t.Errorf("#%d: %q -> %s, want %s", i, c.p.Query, got, c.want)
		}
		wantQuery, wantAt := c.p.Query, c.p.SearchedAt
		if prev != nil && prev.LastSearchedAt.After(wantAt) {
			wantQuery, wantAt = prev.LastQuery, prev.LastSearchedAt // a late prompt is not the last search
		}
		if r.LastQuery != wantQuery || !r.LastSearchedAt.Equal(wantAt) || r.UserID != "u" {
			t.Errorf("#%d: last query %q at %v for %q, want %q at %v", i, r.LastQuery, r.LastSearchedAt, r.UserID, wantQuery, wantAt)
		}
		if prev != nil && list(prev) != before {
			t.Errorf("#%d: Apply changed the previous recommendation", i)
		}
	}
}

func TestApplyKeepsFifty(t *testing.T) {
	tbl := NewTable()
	for i := range 60 {
		tbl.Upsert(fmt.Sprintf("m/%02d", i), product("m", fmt.Sprintf("%02d", i), fmt.Sprintf("Item %d", i), "1"))
	}
	var r *records.Recommendation
	for i := range 60 {
		p := prompt("u", fmt.Sprintf("s%d", i), fmt.Sprintf("item %d", i), int64(1000+i))
		r = Apply(r, p, tbl.Lookup(nil, Normalize(p.Query)))
	}
	if len(r.Products) != MaxProducts {
		t.Fatalf("kept %d products, want %d", len(r.Products), MaxProducts)
	}
	if r.Products[0].ProductID != "59" || r.Products[MaxProducts-1].ProductID != "10" {
		t.Fatalf("kept %s..%s, want the newest 59..10", r.Products[0].ProductID, r.Products[MaxProducts-1].ProductID)
	}
}

func TestCompareKeys(t *testing.T) {
	for i, c := range [][4]string{
		{"m1", "p1", "m1", "p1"},
		{"m1", "p1", "m1", "p2"},
		{"m1", "p", "m1-a", "p"},
		{"m1", "p", "m1x", "p"},
		{"", "a", "a", ""},
		{"a/b", "c", "a", "b/c"},
		{"ab", "", "a", "b"},
		{"", "", "", ""},
	} {
		want := strings.Compare(c[0]+"/"+c[1], c[2]+"/"+c[3])
		if got := compareKeys(c[0], c[1], c[2], c[3]); got != want {
			t.Errorf("#%d: compareKeys(%q) = %d, want %d", i, c, got, want)
		}
		if got := compareKeys(c[2], c[3], c[0], c[1]); got != -want {
			t.Errorf("#%d: reversed compareKeys(%q) = %d, want %d", i, c, got, -want)
		}
	}
}

// The result depends on the set of prompts, not on their order: every
// permutation of the same prompts gives the same Recommendation.
func TestApplyIsOrderIndependent(t *testing.T) {
	tbl := NewTable()
	for i := range 8 {
		tbl.Upsert(fmt.Sprintf("m/%d", i), product("m", fmt.Sprint(i), fmt.Sprintf("Item %d", i%4), "1"))
	}
	prompts := []*records.SearchPrompt{
		prompt("u", "a", "item 0", 10), prompt("u", "b", "item 1", 20), prompt("u", "c", "item 0", 30),
		prompt("u", "d", "nothing", 40), prompt("u", "e", "item 2", 25), prompt("u", "f", "item 1", 5),
	}
	var want string
	permute(prompts, 0, func(order []*records.SearchPrompt) {
		var r *records.Recommendation
		for _, p := range order {
			r = Apply(r, p, tbl.Lookup(nil, Normalize(p.Query)))
		}
		got := list(r) + " last=" + r.LastQuery
		if want == "" {
			want = got
		} else if got != want {
			t.Fatalf("order %v gives %s, another gives %s", searchIDs(order), got, want)
		}
	})
	if want != "m/0:c@30 m/4:c@30 m/2:e@25 m/6:e@25 m/1:b@20 m/5:b@20 last=nothing" {
		t.Fatalf("got %s", want)
	}
}

func permute(ps []*records.SearchPrompt, k int, f func([]*records.SearchPrompt)) {
	if k == len(ps) {
		f(ps)
		return
	}
	for i := k; i < len(ps); i++ {
		ps[k], ps[i] = ps[i], ps[k]
		permute(ps, k+1, f)
		ps[k], ps[i] = ps[i], ps[k]
	}
}

func searchIDs(ps []*records.SearchPrompt) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.SearchID)
	}
	return out
}
