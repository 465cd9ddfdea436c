package recommender

import (
	"slices"
	"strings"

	"github.com/shopstream/shopstream/internal/records"
)

// MaxProducts is how many products a user's Recommendation keeps.
const MaxProducts = 50

// MaxQueryBytes is the longest prompt the join accepts; `shopstream search`
// refuses longer ones before they reach Kafka.
const MaxQueryBytes = 1024

// MaxUserIDBytes is the longest user id the join accepts: every user held
// in memory costs its id, and a key of megabytes would cost megabytes.
const MaxUserIDBytes = 256

// DefaultMaxUsers is how many users' recommendations an instance holds by
// default (Options.MaxUsers): about 100 MB at 50 products each.
const DefaultMaxUsers = 100_000

// Apply returns the user's Recommendation after the prompt p, given the
// previous one (nil when the user has none) and the products the prompt
// matched (ordered by key, as Table.Lookup returns them). The rules, which
// ksql/ reproduces (see testdata/scenario.json):
//
//   - every matched product becomes a recommendation carrying the prompt's
//     search id, with recommended_at = the prompt's searched_at;
//   - a product is listed once (by mall_id/product_id), with its newest
//     recommendation: a late prompt (older searched_at) does not replace a
//     newer one;
//   - products are ordered newest first (recommended_at descending, then
//     "mall_id/product_id" ascending) and at most MaxProducts are kept;
//   - last_query and last_searched_at are those of the newest prompt,
//     whether it matched anything or not.
//
// So the result depends on which prompts were joined with which products,
// not on the order the prompts were processed in: ksqlDB, which
// repartitions prompts by name and so loses their order per user, arrives
// at the same list. prev is not modified.
func Apply(prev *records.Recommendation, p *records.SearchPrompt, matches []Product) *records.Recommendation {
	next := &records.Recommendation{UserID: p.UserID, LastQuery: p.Query, LastSearchedAt: p.SearchedAt}
	var old []records.RecommendedProduct
	if prev != nil {
		old = prev.Products
		if prev.LastSearchedAt.After(p.SearchedAt) {
			next.LastQuery, next.LastSearchedAt = prev.LastQuery, prev.LastSearchedAt
		}
	}
	if len(matches) == 0 {
		// Nothing new: share the previous list, which nobody modifies.
		next.Products = old
		if next.Products == nil {
			next.Products = []records.RecommendedProduct{}
		}
		return next
	}
	n := min(len(matches)+len(old), MaxProducts)
	next.Products = make([]records.RecommendedProduct, 0, n)
	for _, m := range matches {
		if i := findProduct(old, m.MallID, m.ProductID); i >= 0 && old[i].RecommendedAt.After(p.SearchedAt) {
			continue // already recommended by a newer prompt: kept below
		}
		next.Products = append(next.Products, records.RecommendedProduct{
			ProductID: m.ProductID, MallID: m.MallID, Name: m.Name, Price: m.Price,
			SearchID: p.SearchID, RecommendedAt: p.SearchedAt,
		})
	}
	added := next.Products
	for _, o := range old {
		if !listed(added, o.MallID, o.ProductID) {
			next.Products = append(next.Products, o)
		}
	}
	// Usually the prompt is newer than everything before it and the list
	// is already in order; a prompt that arrives late sorts into place.
	if !slices.IsSortedFunc(next.Products, newestFirst) {
		slices.SortStableFunc(next.Products, newestFirst)
	}
	if len(next.Products) > MaxProducts {
		next.Products = next.Products[:MaxProducts:MaxProducts]
	}
	return next
}

func findProduct(ps []records.RecommendedProduct, mallID, productID string) int {
	for i := range ps {
		if ps[i].ProductID == productID && ps[i].MallID == mallID {
			return i
		}
	}
	return -1
}

func listed(ps []records.RecommendedProduct, mallID, productID string) bool {
	return findProduct(ps, mallID, productID) >= 0
}

// newestFirst orders by recommended_at descending, then by the product's
// key "mall_id/product_id" ascending.
func newestFirst(a, b records.RecommendedProduct) int {
	if c := b.RecommendedAt.Compare(a.RecommendedAt); c != 0 {
		return c
	}
	return compareKeys(a.MallID, a.ProductID, b.MallID, b.ProductID)
}

// compareKeys compares "am/ap" with "bm/bp" as strings, without building them.
func compareKeys(am, ap, bm, bp string) int {
	ka := [3]string{am, "/", ap}
	kb := [3]string{bm, "/", bp}
	i, j := 0, 0 // part indexes
	x, y := ka[0], kb[0]
	for {
		for x == "" && i < 2 {
			i++
			x = ka[i]
		}
		for y == "" && j < 2 {
			j++
			y = kb[j]
		}
		if x == "" || y == "" {
			switch {
			case x == "" && y == "":
				return 0
			case x == "":
				return -1
			default:
				return 1
			}
		}
		n := min(len(x), len(y))
		if c := strings.Compare(x[:n], y[:n]); c != 0 {
			return c
		}
		x, y = x[n:], y[n:]
	}
}
