package pgstore

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/shopstream/shopstream/internal/records"
)

// Column is one column a record fills.
type Column struct {
	Name string
	Type string // as in the migration, for the staging table
}

// Table is one materialised topic: Key is the primary key column; a
// tombstone deletes the rows whose TombstoneBy column equals the record key
// (TombstoneBy is Key, except for searches, which are keyed by search_id in
// the table and by user in the topic).
type Table struct {
	Name        string
	Key         string
	TombstoneBy string
	// Columns are filled from the record's value; the key column first.
	Columns []Column

	tombIdx int // index of TombstoneBy in Columns
}

var productColumns = []Column{
	{"key", "text"}, {"product_id", "text"}, {"mall_id", "text"}, {"name", "text"},
	{"description", "text"}, {"price_amount", "numeric"}, {"price_currency", "text"},
	{"category", "text"}, {"brand", "text"}, {"sku", "text"}, {"tags", "text[]"},
	{"images", "jsonb"}, {"stock", "integer"}, {"specifications", "jsonb"},
	{"created_at", "timestamptz"}, {"updated_at", "timestamptz"},
}

// The tables, as migrations/ creates them.
var (
	Products         = newTable("products", "key", "key", productColumns)
	FilteredProducts = newTable("filtered_products", "key", "key", productColumns)
	CompleteProducts = newTable("complete_products", "key", "key", append(append([]Column{}, productColumns...),
		Column{"stored_images", "jsonb"}, Column{"collected_at", "timestamptz"}))
	Searches = newTable("searches", "search_id", "user_id", []Column{
		{"search_id", "text"}, {"user_id", "text"}, {"query", "text"}, {"searched_at", "timestamptz"},
	})
	Recommendations = newTable("recommendations", "user_id", "user_id", []Column{
		{"user_id", "text"}, {"products", "jsonb"}, {"last_query", "text"}, {"last_searched_at", "timestamptz"},
	})
)

// Tables lists every materialised table.
var Tables = []*Table{Products, FilteredProducts, CompleteProducts, Searches, Recommendations}

func newTable(name, key, tombstoneBy string, cols []Column) *Table {
	t := &Table{Name: name, Key: key, TombstoneBy: tombstoneBy, Columns: cols, tombIdx: -1}
	for i, c := range cols {
		if c.Name == tombstoneBy {
			t.tombIdx = i
		}
	}
	// TestTablesMatchTheMigrations checks that the key column comes first
	// and that TombstoneBy is a column, against the migrated schema.
	return t
}

// Row is one record's effect on a table: an upsert of Values, or (Deleted) a
// delete of the rows whose TombstoneBy column equals Key.
type Row struct {
	Key     string
	Deleted bool
	Values  []any // in Columns order; nil when Deleted
	// Tuple, when set, holds the columns in COPY's binary format
	// (AppendProductTuple), and Values may be nil; a table whose
	// TombstoneBy is not its Key needs Values all the same.
	Tuple     []byte
	Partition int32
	Offset    int64
}

// InvalidError marks a record whose value cannot be stored; the sink sends it
// to the dead-letter topic with the message as the reason.
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return e.Reason }

func invalid(format string, a ...any) error { return &InvalidError{Reason: fmt.Sprintf(format, a...)} }

// text checks that strings can be stored: PostgreSQL's text and jsonb take
// neither NUL characters nor invalid UTF-8.
func text(field, s string) error {
	if !utf8.ValidString(s) {
		return invalid("field %s is not valid UTF-8", field)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return invalid("field %s contains a NUL character, which PostgreSQL cannot store", field)
	}
	return nil
}

func texts(field string, ss []string) error {
	for _, s := range ss {
		if err := text(field, s); err != nil {
			return err
		}
	}
	return nil
}

func jsonb(field string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, invalid("field %s does not encode as JSON: %v", field, err)
	}
	return b, nil
}

// ProductValues returns a product's columns for Products, FilteredProducts
// (and, with two more, CompleteProducts). key is the record key.
func ProductValues(key string, p *records.Product) ([]any, error) {
	if err := CheckProduct(key, p); err != nil {
		return nil, err
	}
	amount, ok := parseDecimal(p.Price.Amount)
	if !ok {
		return nil, invalid("price.amount %q is not a decimal number", truncate(p.Price.Amount))
	}
	tags := p.Tags
	if tags == nil {
		tags = []string{}
	}
	return []any{key, p.ProductID, p.MallID, p.Name, p.Description, amount, p.Price.Currency,
		p.Category, p.Brand, p.SKU, tags, imagesJSON(p.Images), p.Stock, stringMapJSON(p.Specifications), p.CreatedAt, p.UpdatedAt}, nil
}

// CheckProduct says, as an *InvalidError, why a product cannot be stored:
// a key that is not its ids, or a string PostgreSQL refuses (NUL, bytes that
// are not UTF-8). The sink and the collector both ask it.
func CheckProduct(key string, p *records.Product) error {
	if want := p.Key(); key != want {
		return invalid("record key %q does not match the value's mall_id/product_id %q", truncate(key), truncate(want))
	}
	for _, f := range []struct{ name, v string }{
		{"product_id", p.ProductID}, {"mall_id", p.MallID}, {"name", p.Name}, {"description", p.Description},
		{"price.amount", p.Price.Amount}, {"price.currency", p.Price.Currency}, {"category", p.Category}, {"brand", p.Brand}, {"sku", p.SKU},
	} {
		if err := text(f.name, f.v); err != nil {
			return err
		}
	}
	if err := texts("tags", p.Tags); err != nil {
		return err
	}
	for _, im := range p.Images {
		if err := texts("images", []string{im.URL, im.Alt}); err != nil {
			return err
		}
	}
	for k, v := range p.Specifications {
		if err := texts("specifications", []string{k, v}); err != nil {
			return err
		}
	}
	return nil
}

// CompleteProductValues returns a complete product's columns.
func CompleteProductValues(key string, c *records.CompleteProduct) ([]any, error) {
	vals, err := ProductValues(key, &c.Product)
	if err != nil {
		return nil, err
	}
	for _, im := range c.Images {
		if err := texts("images", []string{im.URL, im.Path, im.SHA256, im.ContentType}); err != nil {
			return nil, err
		}
	}
	return append(vals, storedImagesJSON(c.Images), c.CollectedAt), nil
}

// SearchValues returns a search's columns; the record key is the user.
func SearchValues(key string, s *records.SearchPrompt) ([]any, error) {
	if key != s.UserID {
		return nil, invalid("record key %q does not match the value's user_id %q", truncate(key), truncate(s.UserID))
	}
	if s.SearchID == "" {
		return nil, invalid("search_id is empty")
	}
	if err := texts("search", []string{s.SearchID, s.UserID, s.Query}); err != nil {
		return nil, err
	}
	return []any{s.SearchID, s.UserID, s.Query, s.SearchedAt}, nil
}

// RecommendationValues returns a user's recommendations' columns.
func RecommendationValues(key string, r *records.Recommendation) ([]any, error) {
	if key != r.UserID {
		return nil, invalid("record key %q does not match the value's user_id %q", truncate(key), truncate(r.UserID))
	}
	if err := texts("recommendation", []string{r.UserID, r.LastQuery}); err != nil {
		return nil, err
	}
	products := r.Products
	if products == nil {
		products = []records.RecommendedProduct{}
	}
	for _, p := range products {
		if err := texts("products", []string{p.ProductID, p.MallID, p.Name, p.Price.Amount, p.Price.Currency, p.SearchID}); err != nil {
			return nil, err
		}
	}
	pj, err := jsonb("products", products)
	if err != nil {
		return nil, err
	}
	return []any{r.UserID, pj, r.LastQuery, r.LastSearchedAt}, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
