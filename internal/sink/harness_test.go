package sink

import (
	"context"
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/pgstore"
	"github.com/shopstream/shopstream/internal/records"
)

const testGroup = "sink-test"

// rig is an in-process Kafka and schema registry with the sink's topics.
type rig struct {
	kc     *kafkatest.Cluster
	serde  *records.Serde
	topics records.Topics
	prod   *kgo.Client
	admin  *kadm.Client
}

func newRig(t testing.TB, partitions int32) *rig {
	t.Helper()
	ctx := context.Background()
	kc := kafkatest.Start(t)
	prod := kc.Client(kgo.ProducerLinger(0))
	r := &rig{kc: kc, serde: kc.Serde, topics: records.DefaultTopics(), prod: prod, admin: kadm.NewClient(prod)}
	for _, name := range []string{r.topics.Products, r.topics.Filtered, r.topics.CompleteProducts, r.topics.Find, r.topics.Recommendations, r.topics.DLQ} {
		resp, err := r.admin.CreateTopic(ctx, partitions, 1, nil, name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("create topic %s: %v", name, err)
		}
	}
	return r
}

// newSink builds a sink whose consumer also gets extra.
func (r *rig) newSink(t testing.TB, store *pgstore.Store, reg prometheus.Registerer, extra ...kgo.Opt) *Sink {
	t.Helper()
	s, err := New(Options{Deps: component.Deps{Kafka: r.kc.Kafka.With(extra...), Topics: r.topics, Serde: r.serde, Registerer: reg},
		Group: testGroup, Store: store, MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// world is what was produced and therefore what each table must hold.
type world struct {
	products, filtered, complete map[string]stored[records.CompleteProduct]
	searches                     map[string]stored[records.SearchPrompt]
	recs                         map[string]stored[records.Recommendation]
	ends                         map[string]map[int32]int64 // next offset per produced partition
	records                      int
	mu                           sync.Mutex // a producer goroutine writes while the test reads ends
}

type stored[T any] struct {
	V         T
	Partition int32
	Offset    int64
}

func newWorld() *world {
	return &world{products: map[string]stored[records.CompleteProduct]{}, filtered: map[string]stored[records.CompleteProduct]{},
		complete: map[string]stored[records.CompleteProduct]{}, searches: map[string]stored[records.SearchPrompt]{},
		recs: map[string]stored[records.Recommendation]{}, ends: map[string]map[int32]int64{}}
}

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func randProduct(rng *rand.Rand, mall, id string, version int) records.Product {
	at := epoch.Add(time.Duration(rng.Intn(1e6)) * time.Millisecond)
	p := records.Product{ProductID: id, MallID: mall, Name: fmt.Sprintf("product %s v%d", id, version),
		Description: "desc", Price: records.Price{Amount: fmt.Sprintf("%d.%02d", rng.Intn(1000), rng.Intn(100)), Currency: "EUR"},
		Category: "cat", Brand: "brand", SKU: "sku-" + id, Tags: []string{}, Images: []records.Image{},
		Stock: int32(rng.Intn(100)), Specifications: map[string]string{}, CreatedAt: at, UpdatedAt: at.Add(time.Second)}
	for i := rng.Intn(3); i > 0; i-- {
		p.Tags = append(p.Tags, fmt.Sprintf("t%d", rng.Intn(10)))
		p.Images = append(p.Images, records.Image{URL: fmt.Sprintf("http://img/%s/%d", id, i), Alt: "alt"})
		p.Specifications[fmt.Sprintf("k%d", i)] = fmt.Sprintf("v%d", rng.Intn(5))
	}
	return p
}

// mix says how many records of each topic to produce over how many keys,
// and how often a record is a tombstone.
type mix struct {
	products, filtered, complete, searches, recs int
	tombstoneEvery                               int
}

// mix100k is the 100k records with updates and tombstones.
var mix100k = mix{products: 40000, filtered: 20000, complete: 15000, searches: 15000, recs: 10000, tombstoneEvery: 10}

func (m mix) total() int { return m.products + m.filtered + m.complete + m.searches + m.recs }

// produce writes m's records in chunks (each chunk interleaves the topics)
// and records the final state of every key in w.
func (r *rig) produce(t testing.TB, w *world, m mix, seed int64) { r.producePaced(t, w, m, seed, 0) }

// producePaced is produce with a pause after each chunk of 2000 records, so
// that records keep arriving while a test interrupts the sink.
func (r *rig) producePaced(t testing.TB, w *world, m mix, seed int64, pause time.Duration) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	type op struct {
		rec   *kgo.Record
		apply func(p int32, off int64)
	}
	var ops []op
	enc := func(topic string, v any) []byte {
		b, err := r.serde.Encode(context.Background(), nil, topic, v)
		if err != nil {
			t.Fatalf("encode for %s: %v", topic, err)
		}
		return b
	}
	tomb := func() bool { return m.tombstoneEvery > 0 && rng.Intn(m.tombstoneEvery) == 0 }
	productOps := func(n int, topic string, into map[string]stored[records.CompleteProduct], complete bool) {
		keys := n/4 + 1
		for i := 0; i < n; i++ {
			mall, id := fmt.Sprintf("m%d", rng.Intn(7)), fmt.Sprintf("p%d", rng.Intn(keys))
			key := records.ProductKey(mall, id)
			if tomb() {
				ops = append(ops, op{&kgo.Record{Topic: topic, Key: []byte(key)}, func(int32, int64) { delete(into, key) }})
				continue
			}
			cp := records.CompleteProduct{Product: randProduct(rng, mall, id, i)}
			var val []byte
			if complete {
				cp.Images = []records.StoredImage{{URL: "http://img/x", Path: "blobs/" + id, SHA256: "ab", Size: int64(i), ContentType: "image/png"}}
				cp.CollectedAt = epoch.Add(time.Duration(i) * time.Millisecond)
				val = enc(topic, &cp)
			} else {
				val = enc(topic, &cp.Product)
			}
			ops = append(ops, op{&kgo.Record{Topic: topic, Key: []byte(key), Value: val}, func(p int32, off int64) {
				into[key] = stored[records.CompleteProduct]{cp, p, off}
			}})
		}
	}
	productOps(m.products, r.topics.Products, w.products, false)
	productOps(m.filtered, r.topics.Filtered, w.filtered, false)
	productOps(m.complete, r.topics.CompleteProducts, w.complete, true)
	users := m.searches/10 + 1
	for i := 0; i < m.searches; i++ {
		user := fmt.Sprintf("u%d", rng.Intn(users))
		if rng.Intn(3*m.tombstoneEvery+1) == 0 {
			ops = append(ops, op{&kgo.Record{Topic: r.topics.Find, Key: []byte(user)}, func(int32, int64) {
				for id, s := range w.searches {
					if s.V.UserID == user {
						delete(w.searches, id)
					}
				}
			}})
			continue
		}
		sp := records.SearchPrompt{SearchID: fmt.Sprintf("s%d-%d", seed, i), UserID: user, Query: fmt.Sprintf("product p%d", rng.Intn(100)),
			SearchedAt: epoch.Add(time.Duration(i) * time.Second)}
		ops = append(ops, op{&kgo.Record{Topic: r.topics.Find, Key: []byte(user), Value: enc(r.topics.Find, &sp)}, func(p int32, off int64) {
			w.searches[sp.SearchID] = stored[records.SearchPrompt]{sp, p, off}
		}})
	}
	recUsers := m.recs/4 + 1
	for i := 0; i < m.recs; i++ {
		user := fmt.Sprintf("u%d", rng.Intn(recUsers))
		if tomb() {
			ops = append(ops, op{&kgo.Record{Topic: r.topics.Recommendations, Key: []byte(user)}, func(int32, int64) { delete(w.recs, user) }})
			continue
		}
		rec := records.Recommendation{UserID: user, LastQuery: "q", LastSearchedAt: epoch.Add(time.Duration(i) * time.Second),
			Products: []records.RecommendedProduct{{ProductID: "p1", MallID: "m1", Name: "n", Price: records.Price{Amount: "1.00", Currency: "EUR"},
				SearchID: "s", RecommendedAt: epoch}}}
		ops = append(ops, op{&kgo.Record{Topic: r.topics.Recommendations, Key: []byte(user), Value: enc(r.topics.Recommendations, &rec)}, func(p int32, off int64) {
			w.recs[user] = stored[records.Recommendation]{rec, p, off}
		}})
	}
	ops = interleave(rng, ops, func(o op) string { return o.rec.Topic })
	const chunk = 2000
	for start := 0; start < len(ops); start += chunk {
		end := min(start+chunk, len(ops))
		recs := make([]*kgo.Record, 0, end-start)
		byRec := make(map[*kgo.Record]op, end-start)
		for _, o := range ops[start:end] {
			recs = append(recs, o.rec)
			byRec[o.rec] = o
		}
		res := r.prod.ProduceSync(context.Background(), recs...)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		// Results come in the order of their partitions' acknowledgements:
		// replay them in log order, which is each key's order.
		sort.Slice(res, func(i, j int) bool {
			a, b := res[i].Record, res[j].Record
			if a.Topic != b.Topic || a.Partition != b.Partition {
				return a.Topic+string(rune(a.Partition)) < b.Topic+string(rune(b.Partition))
			}
			return a.Offset < b.Offset
		})
		w.mu.Lock()
		for _, pr := range res {
			byRec[pr.Record].apply(pr.Record.Partition, pr.Record.Offset)
			if w.ends[pr.Record.Topic] == nil {
				w.ends[pr.Record.Topic] = map[int32]int64{}
			}
			if next := pr.Record.Offset + 1; next > w.ends[pr.Record.Topic][pr.Record.Partition] {
				w.ends[pr.Record.Topic][pr.Record.Partition] = next
			}
		}
		w.mu.Unlock()
		time.Sleep(pause)
	}
	w.mu.Lock()
	w.records += len(ops)
	w.mu.Unlock()
}

// interleave mixes the topics' records at random, keeping each topic's own
// order (so each key's records stay in order).
func interleave[T any](rng *rand.Rand, in []T, group func(T) string) []T {
	var names []string
	by := map[string][]T{}
	for _, v := range in {
		g := group(v)
		if by[g] == nil {
			names = append(names, g)
		}
		by[g] = append(by[g], v)
	}
	out := make([]T, 0, len(in))
	for len(out) < len(in) {
		g := names[rng.Intn(len(names))]
		if len(by[g]) == 0 {
			continue
		}
		out = append(out, by[g][0])
		by[g] = by[g][1:]
	}
	return out
}

// caughtUp says whether the store's offsets reached everything produced.
func caughtUp(ctx context.Context, store *pgstore.Store, w *world) (bool, int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var topics []string
	for t := range w.ends {
		topics = append(topics, t)
	}
	offs, err := store.Offsets(ctx, testGroup, topics)
	if err != nil {
		return false, 0, err
	}
	var behind int64
	for t, parts := range w.ends {
		for p, end := range parts {
			behind += end - offs[t][p]
		}
	}
	return behind == 0, behind, nil
}

func waitCaughtUp(t testing.TB, store *pgstore.Store, w *world, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, behind, err := caughtUp(context.Background(), store, w)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sink did not catch up within %s: %d records behind (err %v)", timeout, behind, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// assertTablesEqualWorld compares every table, row by row, with the final
// state of its topic, including which record each row came from.
func assertTablesEqualWorld(t testing.TB, store *pgstore.Store, w *world) {
	t.Helper()
	ctx := context.Background()
	for _, c := range []struct {
		table    string
		want     map[string]stored[records.CompleteProduct]
		complete bool
	}{{"products", w.products, false}, {"filtered_products", w.filtered, false}, {"complete_products", w.complete, true}} {
		got := readProducts(t, ctx, store, c.table, c.complete)
		diffMaps(t, c.table, got, c.want)
	}
	diffMaps(t, "searches", readSearches(t, ctx, store), w.searches)
	diffMaps(t, "recommendations", readRecs(t, ctx, store), w.recs)
}

func diffMaps[T any](t testing.TB, table string, got, want map[string]stored[T]) {
	t.Helper()
	missing, extra, differ := 0, 0, 0
	var example string
	for k, wv := range want {
		gv, ok := got[k]
		switch {
		case !ok:
			missing++
			example = fmt.Sprintf("missing %s", k)
			if missing <= 5 {
				t.Logf("%s: missing %s, written at %d/%d", table, k, wv.Partition, wv.Offset)
			}
		case !reflect.DeepEqual(gv, wv):
			differ++
			example = fmt.Sprintf("%s:\n got %+v\nwant %+v", k, gv, wv)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra++
			example = fmt.Sprintf("extra %s", k)
		}
	}
	if missing+extra+differ > 0 {
		t.Errorf("table %s: %d rows, want %d: %d missing, %d extra, %d differ; e.g. %s", table, len(got), len(want), missing, extra, differ, example)
	}
}

func readProducts(t testing.TB, ctx context.Context, store *pgstore.Store, table string, complete bool) map[string]stored[records.CompleteProduct] {
	t.Helper()
	extra := ", '[]'::jsonb, 'epoch'::timestamptz"
	if complete {
		extra = ", stored_images, collected_at"
	}
	rows, _ := store.Pool.Query(ctx, `SELECT key, product_id, mall_id, name, description, price_amount::text, price_currency,
		category, brand, sku, tags, images, stock, specifications, created_at, updated_at, source_partition, source_offset`+extra+` FROM `+table)
	out := map[string]stored[records.CompleteProduct]{}
	var key string
	var s stored[records.CompleteProduct]
	p := &s.V.Product
	_, err := pgx.ForEachRow(rows, []any{&key, &p.ProductID, &p.MallID, &p.Name, &p.Description, &p.Price.Amount, &p.Price.Currency,
		&p.Category, &p.Brand, &p.SKU, &p.Tags, &p.Images, &p.Stock, &p.Specifications, &p.CreatedAt, &p.UpdatedAt,
		&s.Partition, &s.Offset, &s.V.Images, &s.V.CollectedAt}, func() error {
		v := s
		v.V.Product.CreatedAt, v.V.Product.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
		if complete {
			v.V.CollectedAt = s.V.CollectedAt.UTC()
		} else {
			v.V.Images, v.V.CollectedAt = nil, time.Time{}
		}
		out[key] = v
		s = stored[records.CompleteProduct]{}
		p = &s.V.Product
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	return out
}

func readSearches(t testing.TB, ctx context.Context, store *pgstore.Store) map[string]stored[records.SearchPrompt] {
	t.Helper()
	rows, _ := store.Pool.Query(ctx, `SELECT search_id, user_id, query, searched_at, source_partition, source_offset FROM searches`)
	out := map[string]stored[records.SearchPrompt]{}
	var s stored[records.SearchPrompt]
	_, err := pgx.ForEachRow(rows, []any{&s.V.SearchID, &s.V.UserID, &s.V.Query, &s.V.SearchedAt, &s.Partition, &s.Offset}, func() error {
		v := s
		v.V.SearchedAt = v.V.SearchedAt.UTC()
		out[v.V.SearchID] = v
		return nil
	})
	if err != nil {
		t.Fatalf("read searches: %v", err)
	}
	return out
}

func readRecs(t testing.TB, ctx context.Context, store *pgstore.Store) map[string]stored[records.Recommendation] {
	t.Helper()
	rows, _ := store.Pool.Query(ctx, `SELECT user_id, products, last_query, last_searched_at, source_partition, source_offset FROM recommendations`)
	out := map[string]stored[records.Recommendation]{}
	defer rows.Close()
	for rows.Next() {
		var s stored[records.Recommendation]
		if err := rows.Scan(&s.V.UserID, &s.V.Products, &s.V.LastQuery, &s.V.LastSearchedAt, &s.Partition, &s.Offset); err != nil {
			t.Fatal(err)
		}
		s.V.LastSearchedAt = s.V.LastSearchedAt.UTC()
		for i := range s.V.Products {
			s.V.Products[i].RecommendedAt = s.V.Products[i].RecommendedAt.UTC()
		}
		out[s.V.UserID] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read recommendations: %v", err)
	}
	return out
}

// logState logs what a failed test needs to see: the dead letters and the
// stored offsets.
func (r *rig) logState(t testing.TB, store *pgstore.Store) {
	t.Helper()
	cl, err := r.kc.Kafka.NewClient(kgo.ConsumeTopics(r.topics.DLQ),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Log(err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	f := cl.PollFetches(ctx)
	t.Logf("dead-letter topic: %d records", f.NumRecords())
	for i, rec := range f.Records() {
		if i == 3 {
			break
		}
		for _, h := range rec.Headers {
			if h.Key == deadletter.HeaderError {
				t.Logf("dead letter from %s/%d@%d: %s", rec.Topic, rec.Partition, rec.Offset, h.Value)
			}
		}
	}
	rows, _ := store.Pool.Query(context.Background(), "SELECT topic || '/' || partition || ' ' || next_offset FROM sink_offsets ORDER BY 1")
	offs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	t.Logf("stored offsets %v (err %v)", offs, err)
}
