package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopstream/shopstream/internal/pgcluster/pgtest"
	"github.com/shopstream/shopstream/internal/records"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(t *testing.T) *Store {
	t.Helper()
	s, applied, err := Open(context.Background(), pgtest.DB(t))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(s.Close)
	if len(applied) == 0 {
		t.Fatalf("a fresh database applied no migration")
	}
	return s
}

func product(mall, id, name string, stock int32) *records.Product {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return &records.Product{ProductID: id, MallID: mall, Name: name, Description: "d",
		Price: records.Price{Amount: "19.90", Currency: "EUR"}, Category: "c", Brand: "b", SKU: "s",
		Tags: []string{"x", "y"}, Images: []records.Image{{URL: "http://img/1", Alt: "one"}}, Stock: stock,
		Specifications: map[string]string{"colour": "red"}, CreatedAt: at, UpdatedAt: at.Add(time.Hour)}
}

func upsert(t *testing.T, p *records.Product, off int64) Row {
	t.Helper()
	v, err := ProductValues(p.Key(), p)
	if err != nil {
		t.Fatalf("values of %s: %v", p.Key(), err)
	}
	return Row{Key: p.Key(), Values: v, Partition: 0, Offset: off}
}

type productRow struct {
	Key, Name, Amount string
	Stock             int32
	Tags              []string
	Specs             map[string]string
	Offset            int64
}

func readProducts(t *testing.T, s *Store, table string) map[string]productRow {
	t.Helper()
	out := map[string]productRow{}
	rows, _ := s.Pool.Query(context.Background(), `SELECT key, name, price_amount::text, stock, tags, specifications, source_offset FROM `+table)
	defer rows.Close()
	for rows.Next() {
		var r productRow
		if err := rows.Scan(&r.Key, &r.Name, &r.Amount, &r.Stock, &r.Tags, &r.Specs, &r.Offset); err != nil {
			t.Fatal(err)
		}
		out[r.Key] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMigrateIsIdempotent(t *testing.T) {
	s := open(t)
	again, err := Migrate(context.Background(), s.Pool)
	if err != nil || len(again) != 0 {
		t.Fatalf("second migrate applied %v, err %v; want nothing", again, err)
	}
	for _, tb := range Tables {
		var n int
		if err := s.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+tb.Name).Scan(&n); err != nil {
			t.Errorf("table %s: %v", tb.Name, err)
		}
	}
}

func TestApplyUpsertsDeletesAndAdvancesOffsets(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	a, b, c := product("m1", "a", "Apple", 1), product("m1", "b", "Banana", 2), product("m2", "c", "Cherry", 3)
	res, err := s.Apply(ctx, &Batch{Group: "g", Rows: map[*Table][]Row{Products: {
		upsert(t, a, 0), upsert(t, b, 1), upsert(t, c, 2),
		upsert(t, product("m1", "a", "Apple v2", 10), 3), // the last record of a key wins
		{Key: b.Key(), Deleted: true, Offset: 4},         // a tombstone after an upsert deletes
	}}, Offsets: []Offset{{Topic: "shop_products", Partition: 0, Stored: NoOffset, Next: 5}}})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if res.Upserts["products"] != 2 || res.Deletes["products"] != 1 {
		t.Errorf("result %+v, want 2 upserts and 1 delete after compaction", res)
	}
	got := readProducts(t, s, "products")
	want := map[string]productRow{
		"m1/a": {Key: "m1/a", Name: "Apple v2", Amount: "19.90", Stock: 10, Tags: []string{"x", "y"}, Specs: map[string]string{"colour": "red"}, Offset: 3},
		"m2/c": {Key: "m2/c", Name: "Cherry", Amount: "19.90", Stock: 3, Tags: []string{"x", "y"}, Specs: map[string]string{"colour": "red"}, Offset: 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("products = %+v\nwant %+v", got, want)
	}
	// A second batch from offset 5: a delete of c, an update of a.
	_, err = s.Apply(ctx, &Batch{Group: "g", Rows: map[*Table][]Row{Products: {
		{Key: c.Key(), Deleted: true, Offset: 5}, upsert(t, product("m1", "a", "Apple v3", 11), 6),
	}}, Offsets: []Offset{{Topic: "shop_products", Partition: 0, Stored: 5, Next: 7}}})
	if err != nil {
		t.Fatalf("second apply: %v", err)
	}
	got = readProducts(t, s, "products")
	if len(got) != 1 || got["m1/a"].Name != "Apple v3" || got["m1/a"].Offset != 6 {
		t.Fatalf("after the second batch products = %+v, want only Apple v3 from offset 6", got)
	}
	offs, err := s.Offsets(ctx, "g", []string{"shop_products"})
	if err != nil || offs["shop_products"][0] != 7 {
		t.Fatalf("stored offsets %v (err %v), want shop_products/0 at 7", offs, err)
	}
}

// A batch that starts from an offset the store no longer has (another
// consumer advanced it) writes nothing.
func TestApplyRefusesAStaleBatch(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	first := &Batch{Group: "g", Rows: map[*Table][]Row{Products: {upsert(t, product("m", "1", "new", 2), 10)}},
		Offsets: []Offset{{Topic: "p", Partition: 3, Stored: NoOffset, Next: 11}}}
	if _, err := s.Apply(ctx, first); err != nil {
		t.Fatal(err)
	}
	for i, stored := range []int64{NoOffset, 9} {
		stale := &Batch{Group: "g", Rows: map[*Table][]Row{Products: {upsert(t, product("m", "1", "stale", 1), 9)}},
			Offsets: []Offset{{Topic: "p", Partition: 3, Stored: stored, Next: 10}}}
		_, err := s.Apply(ctx, stale)
		var oc *OffsetConflictError
		if !errors.As(err, &oc) || oc.Partition != 3 {
			t.Fatalf("#%d stale batch: err = %v, want an OffsetConflictError for partition 3", i, err)
		}
	}
	if got := readProducts(t, s, "products")["m/1"]; got.Name != "new" {
		t.Fatalf("after stale batches the row is %+v, want the newer write kept", got)
	}
	// Another group has offsets of its own.
	if _, err := s.Apply(ctx, &Batch{Group: "other", Offsets: []Offset{{Topic: "p", Partition: 3, Stored: NoOffset, Next: 1}}}); err != nil {
		t.Fatalf("another group: %v", err)
	}
}

// A value PostgreSQL refuses (here a CHECK an operator added) is reported and
// skipped; the rest of the batch and the offsets are written.
func TestApplyIsolatesRowsPostgresRefuses(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if _, err := s.Pool.Exec(ctx, "ALTER TABLE products ADD CONSTRAINT stock_not_negative CHECK (stock >= 0)"); err != nil {
		t.Fatal(err)
	}
	var seen []Rejected
	res, err := s.Apply(ctx, &Batch{Group: "g",
		Rows: map[*Table][]Row{Products: {
			upsert(t, product("m", "good1", "ok", 1), 0), upsert(t, product("m", "bad", "no", -5), 1), upsert(t, product("m", "good2", "ok", 2), 2),
		}},
		Offsets:      []Offset{{Topic: "p", Partition: 0, Stored: NoOffset, Next: 3}},
		BeforeCommit: func(_ context.Context, r []Rejected) error { seen = r; return nil },
	})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if len(res.Rejected) != 1 || res.Rejected[0].Row.Key != "m/bad" || len(seen) != 1 {
		t.Fatalf("rejected %+v (BeforeCommit saw %d), want m/bad alone", res.Rejected, len(seen))
	}
	got := readProducts(t, s, "products")
	if _, ok := got["m/bad"]; ok || len(got) != 2 {
		t.Fatalf("products = %v, want good1 and good2 only", got)
	}
}

func TestBeforeCommitErrorRollsBack(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	boom := errors.New("dead-letter topic unreachable")
	_, err := s.Apply(ctx, &Batch{Group: "g", Rows: map[*Table][]Row{Products: {upsert(t, product("m", "1", "x", 1), 0)}},
		Offsets:      []Offset{{Topic: "p", Partition: 0, Stored: NoOffset, Next: 1}},
		BeforeCommit: func(context.Context, []Rejected) error { return boom }})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the BeforeCommit error", err)
	}
	offs, _ := s.Offsets(ctx, "g", []string{"p"})
	if len(readProducts(t, s, "products")) != 0 || len(offs["p"]) != 0 {
		t.Fatalf("a rolled-back batch left rows or offsets: offsets %v", offs)
	}
}

func TestSearchTombstoneDeletesTheUsersEarlierSearches(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	search := func(id, user string, off int64) Row {
		v, err := SearchValues(user, &records.SearchPrompt{SearchID: id, UserID: user, Query: "q" + id, SearchedAt: at})
		if err != nil {
			t.Fatal(err)
		}
		return Row{Key: id, Values: v, Offset: off}
	}
	if _, err := s.Apply(ctx, &Batch{Group: "g", Rows: map[*Table][]Row{Searches: {search("s1", "u1", 0), search("s2", "u2", 1)}}}); err != nil {
		t.Fatal(err)
	}
	// u1's tombstone deletes s1 (stored) and s3 (earlier in this batch) but
	// not s4, searched after it.
	_, err := s.Apply(ctx, &Batch{Group: "g", Rows: map[*Table][]Row{Searches: {
		search("s3", "u1", 2), {Key: "u1", Deleted: true, Offset: 3}, search("s4", "u1", 4),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := s.Pool.Query(ctx, "SELECT search_id FROM searches ORDER BY search_id")
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || !reflect.DeepEqual(ids, []string{"s2", "s4"}) {
		t.Fatalf("searches = %v (err %v), want [s2 s4]", ids, err)
	}
}

func TestHandWrittenJSONMatchesEncodingJSON(t *testing.T) {
	images := []records.Image{{URL: "http://x/\"q\"\\", Alt: "tab\tnew\nline \x01 é ☃ \u2028"}, {}}
	specs := map[string]string{"a\"": "b\\", "ü": "\x1f"}
	stored := []records.StoredImage{{URL: "u", Path: "p/\"", SHA256: "ab", Size: 42, ContentType: "image/png"}}
	for i, c := range []struct {
		got []byte
		v   any
	}{{imagesJSON(images), images}, {imagesJSON(nil), []records.Image{}}, {stringMapJSON(specs), specs}, {stringMapJSON(nil), map[string]string{}},
		{storedImagesJSON(stored), stored}} {
		var got, want any
		if err := json.Unmarshal(c.got, &got); err != nil {
			t.Fatalf("#%d: %s is not JSON: %v", i, c.got, err)
		}
		raw, _ := json.Marshal(c.v)
		_ = json.Unmarshal(raw, &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("#%d: %s decodes to %v, want %v", i, c.got, got, want)
		}
	}
}

func TestParseDecimalKeepsTheScale(t *testing.T) {
	for i, c := range []struct {
		in   string
		want string
		ok   bool
	}{{"19.90", "19.90", true}, {"-0.5", "-0.5", true}, {"7", "7", true}, {"123456789012345678901234.000001", "123456789012345678901234.000001", true},
		{"", "", false}, {"1.", "", false}, {".5", "", false}, {"1e3", "", false}, {"NaN", "", false}, {"1.2.3", "", false}, {"--1", "", false}} {
		n, ok := parseDecimal(c.in)
		if ok != c.ok {
			t.Errorf("#%d parseDecimal(%q) ok = %v", i, c.in, ok)
			continue
		}
		if !ok {
			continue
		}
		v, err := n.Value()
		if err != nil || v != c.want {
			t.Errorf("#%d parseDecimal(%q) = %v (%v), want %s", i, c.in, v, err, c.want)
		}
	}
}

// Upserts go into a table by COPY alone while their keys are new, and as an
// update (stage, MERGE) once a batch meets keys that exist; an update that
// found none of its keys lets the next batch try COPY alone again.
// Whichever way, the table holds the last version of every key.
func TestApplyInsertsNewKeysAndReplacesExistingOnes(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	replacing := s.replacing.of(Products)
	next := int64(0)
	apply := func(rows ...Row) {
		t.Helper()
		for i := range rows {
			rows[i].Offset = next + int64(i)
		}
		stored := next
		if next == 0 {
			stored = NoOffset
		}
		next += int64(len(rows))
		if _, err := s.Apply(ctx, &Batch{Group: "g", Rows: map[*Table][]Row{Products: rows},
			Offsets: []Offset{{Topic: "p", Partition: 0, Stored: stored, Next: next}}}); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	names := func() map[string]string {
		out := map[string]string{}
		for k, r := range readProducts(t, s, "products") {
			out[k] = r.Name
		}
		return out
	}
	for i, step := range []struct {
		rows      []Row
		want      map[string]string
		replacing bool
	}{
		{[]Row{upsert(t, product("m", "a", "a1", 1), 0), upsert(t, product("m", "b", "b1", 1), 0)},
			map[string]string{"m/a": "a1", "m/b": "b1"}, false},
		{[]Row{upsert(t, product("m", "a", "a2", 1), 0), upsert(t, product("m", "c", "c1", 1), 0)},
			map[string]string{"m/a": "a2", "m/b": "b1", "m/c": "c1"}, true},
		{[]Row{upsert(t, product("m", "b", "b2", 1), 0)},
			map[string]string{"m/a": "a2", "m/b": "b2", "m/c": "c1"}, true},
		{[]Row{upsert(t, product("m", "d", "d1", 1), 0), upsert(t, product("m", "e", "e1", 1), 0)},
			map[string]string{"m/a": "a2", "m/b": "b2", "m/c": "c1", "m/d": "d1", "m/e": "e1"}, false},
		{[]Row{{Key: "m/b", Deleted: true}, upsert(t, product("m", "c", "c2", 1), 0), upsert(t, product("m", "f", "f1", 1), 0)},
			map[string]string{"m/a": "a2", "m/c": "c2", "m/d": "d1", "m/e": "e1", "m/f": "f1"}, true},
	} {
		apply(step.rows...)
		if got := names(); !reflect.DeepEqual(got, step.want) {
			t.Fatalf("#%d: products = %v, want %v", i, got, step.want)
		}
		if replacing.Load() != step.replacing {
			t.Errorf("#%d: the next batch updates: %v, want %v", i, replacing.Load(), step.replacing)
		}
	}
	offs, err := s.Offsets(ctx, "g", []string{"p"})
	if err != nil || offs["p"][0] != next {
		t.Fatalf("stored offsets %v (err %v), want p/0 at %d", offs, err, next)
	}
}

// A row that breaks a unique index other than the key's fails the COPY, the
// replacement and the merge alike: it is refused on its own, and the rows
// around it are written.
func TestApplyRefusesARowThatBreaksAnotherUniqueIndex(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if _, err := s.Pool.Exec(ctx, "CREATE UNIQUE INDEX products_name ON products (name)"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, &Batch{Group: "g", Rows: map[*Table][]Row{Products: {
		upsert(t, product("m", "a", "taken", 1), 0), upsert(t, product("m", "d", "d1", 1), 1),
	}}}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Apply(ctx, &Batch{Group: "g", Rows: map[*Table][]Row{Products: {
		upsert(t, product("m", "b", "free", 1), 2), upsert(t, product("m", "c", "taken", 1), 3), upsert(t, product("m", "d", "d2", 1), 4),
	}}})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if len(res.Rejected) != 1 || res.Rejected[0].Row.Key != "m/c" {
		t.Fatalf("rejected %+v, want m/c alone", res.Rejected)
	}
	got := map[string]string{}
	for k, r := range readProducts(t, s, "products") {
		got[k] = r.Name
	}
	if want := map[string]string{"m/a": "taken", "m/b": "free", "m/d": "d2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("products = %v, want %v", got, want)
	}
}

// Two transactions that write the same new key at once (the key reached two
// partitions) both commit, one after the other; the key holds one row.
func TestApplyConcurrentWritersOfOneKey(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	const rounds = 20
	for i := 0; i < rounds; i++ {
		errs := make(chan error, 2)
		for p := int32(0); p < 2; p++ {
			go func() {
				r := upsert(t, product("m", fmt.Sprint(i), fmt.Sprintf("from %d", p), 1), int64(i))
				r.Partition = p
				_, err := s.Apply(ctx, &Batch{Group: "g", Rows: map[*Table][]Row{Products: {r, upsert(t, product("m", fmt.Sprintf("%d-%d", i, p), "own", 1), int64(i))}}})
				errs <- err
			}()
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
	}
	var n int
	if err := s.Pool.QueryRow(ctx, "SELECT count(*) FROM products").Scan(&n); err != nil || n != 3*rounds {
		t.Fatalf("products holds %d rows (err %v), want %d", n, err, 3*rounds)
	}
}

// A tombstone PostgreSQL refuses to apply (here a foreign key an operator
// added) is reported and skipped like a refused upsert; the rest of the
// batch is written.
func TestApplyIsolatesATombstonePostgresRefuses(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if _, err := s.Apply(ctx, &Batch{Group: "g", Rows: map[*Table][]Row{Products: {
		upsert(t, product("m", "a", "a", 1), 0), upsert(t, product("m", "b", "b", 1), 1),
	}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool.Exec(ctx, "CREATE TABLE orders (product text REFERENCES products (key)); INSERT INTO orders VALUES ('m/a')"); err != nil {
		t.Fatal(err)
	}
	res, err := s.Apply(ctx, &Batch{Group: "g", Rows: map[*Table][]Row{Products: {
		{Key: "m/a", Deleted: true, Offset: 2}, {Key: "m/b", Deleted: true, Offset: 3}, upsert(t, product("m", "c", "c", 1), 4),
	}}})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if len(res.Rejected) != 1 || res.Rejected[0].Row.Key != "m/a" || !res.Rejected[0].Row.Deleted {
		t.Fatalf("rejected %+v, want the tombstone of m/a alone", res.Rejected)
	}
	got := readProducts(t, s, "products")
	if _, ok := got["m/a"]; !ok || len(got) != 2 || got["m/c"].Name != "c" {
		t.Fatalf("products = %v, want m/a kept, m/b deleted, m/c written", got)
	}
}

// Updating a product rewrites it on its own page (a heap-only update, no new
// index entry), batch after batch: the product tables keep room for a new
// version of every row (migrations/0005), and the space of the versions an
// earlier batch replaced is reclaimed when the page is next read. A row
// that moved pages would mean the update paid for a new index entry too.
func TestUpdatesStayOnTheirPages(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	const rows = 200
	pages := func() map[string]string {
		t.Helper()
		q, _ := s.Pool.Query(ctx, `SELECT key, (ctid::text::point)[0]::text FROM products`)
		out := map[string]string{}
		var key, page string
		_, err := pgx.ForEachRow(q, []any{&key, &page}, func() error { out[key] = page; return nil })
		if err != nil || len(out) != rows {
			t.Fatalf("read the products' pages: %d rows, %v", len(out), err)
		}
		return out
	}
	var before map[string]string
	for round := range 4 {
		batch := make([]Row, rows)
		for i := range batch {
			batch[i] = upsert(t, product("m", fmt.Sprint(i), fmt.Sprintf("version %d of a product with a longer name", round), int32(round)), int64(round*rows+i))
		}
		if _, err := s.Apply(ctx, &Batch{Group: "g", Rows: map[*Table][]Row{Products: batch}}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		got := pages()
		for k, p := range before {
			if got[k] != p {
				t.Errorf("round %d: %s moved from page %s to %s", round, k, p, got[k])
			}
		}
		if names := readProducts(t, s, "products"); names["m/7"].Stock != int32(round) {
			t.Fatalf("round %d: m/7 holds %+v", round, names["m/7"])
		}
		before = got
	}
}

// The MERGE that writes an update batch probes the table's key index once
// per staged row even when the table's statistics say it is empty while it
// is not: here ANALYZE ran while the rows were being copied in (it saw
// their pages but no committed row), the case in which an UPDATE … FROM
// the stage compared every row of the table with every staged row instead.
func TestUpdatesProbeTheKeyIndexPerStagedRow(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	batch := make([]Row, 2000)
	for i := range batch {
		batch[i] = upsert(t, product("m", fmt.Sprint(i), "n", 1), int64(i))
	}
	batch, _, err := encodeTuples(Products, batch)
	if err != nil {
		t.Fatal(err)
	}
	err = s.inTx(ctx, func(tx *txn) error {
		if err := tx.copyIn(ctx, Products.Name, Products.copyColumns(false), newCopyStream(Products, batch, false)); err != nil {
			return err
		}
		_, err := s.Pool.Exec(ctx, "ANALYZE products")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var tuples float64
	if err := s.Pool.QueryRow(ctx, "SELECT reltuples FROM pg_class WHERE relname = 'products'").Scan(&tuples); err != nil || tuples != 0 {
		t.Fatalf("products' statistics say %v rows (%v), want 0 for this test", tuples, err)
	}
	err = s.inTx(ctx, func(tx *txn) error {
		if err := tx.copyIn(ctx, Products.stage(), Products.copyColumns(true), newCopyStream(Products, batch, true)); err != nil {
			return err
		}
		rows, _ := tx.conn.Query(ctx, "EXPLAIN "+Products.mergeSQL())
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		plan := strings.Join(lines, "\n")
		if !strings.Contains(plan, "Seq Scan on "+Products.stage()) || !strings.Contains(plan, "Index Cond: (key = s.key)") {
			t.Errorf("the update's plan does not probe the key index per staged row:\n%s", plan)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
