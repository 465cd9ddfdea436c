package sink

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/pgcluster/pgtest"
	"github.com/shopstream/shopstream/internal/pgstore"
	"github.com/shopstream/shopstream/internal/records"
)

const benchRows = 20000

// benchPartitions is how many partitions the benchmark's records come
// from: the product topic's default.
const benchPartitions = 6

// BenchmarkSinkVsCopy measures, in one run on one server and one table, the
// sink writing benchRows product records (decode, COPY, offsets, in the
// polls Run makes) against a raw pgx COPY of the same rows, already decoded,
// into the same table:
//
//	go test -run '^$' -bench SinkVsCopy -benchtime 5x ./internal/sink/
//
// The records come from benchPartitions partitions (key i from partition
// i mod benchPartitions), as the product topic has: the sink writes a
// poll's partitions in concurrent transactions, as it does in production.
// The raw side is one COPY of all the rows, what a user loading them would
// run.
//
// inserts: both sides write into the emptied table. updates: the sink
// overwrites every row of a table that holds them all; COPY cannot update,
// so its figure is the same rows copied into the emptied table, the floor
// of writing them at all (an update in PostgreSQL also has to find and
// expire the old version). For updates it also reports replace-rows/s: the
// same rows written by raw SQL without exactly-once, one DELETE of their
// keys and one COPY in one transaction, the plain way to replace them in
// bulk (BenchmarkReplaceCost compares it with the sink's UPDATE). Each
// iteration writes the sides in turn, alternating which goes first.
//
// Reported: sink-rows/s, copy-rows/s, sink/copy, and the CPU each side used
// per row: in this process and the server's backends together
// (sink-cpu-µs/row, copy-cpu-µs/row), and in the server's backends alone
// (sink-srv-µs/row, copy-srv-µs/row), when the server runs on this machine.
func BenchmarkSinkVsCopy(b *testing.B) {
	ctx := context.Background()
	store := openStore(b, pgtest.DB(b))
	topics := records.DefaultTopics()
	// The sink is driven batch by batch, never run: its Kafka is not used.
	s, err := New(Options{Deps: component.Deps{Kafka: kafkatest.Start(b).Kafka, Topics: topics, Serde: kafkatest.NewSerde(b)}, Group: "bench", Store: store})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	var offsets [benchPartitions]int64
	// batch encodes benchRows products (version v of each key) as records
	// at the next offsets of their partitions, and returns their rows as
	// COPY takes them.
	batch := func(v int) ([]*kgo.Record, [][]any) {
		recs := make([]*kgo.Record, benchRows)
		rows := make([][]any, benchRows)
		for i := range recs {
			p := randProduct(rng, fmt.Sprintf("m%d", i%7), fmt.Sprintf("p%d", i), v)
			val, err := s.opts.Serde.Encode(ctx, nil, topics.Products, &p)
			if err != nil {
				b.Fatal(err)
			}
			part := int32(i % benchPartitions)
			recs[i] = &kgo.Record{Topic: topics.Products, Key: []byte(p.Key()), Value: val, Partition: part, Offset: offsets[part]}
			vals, err := pgstore.ProductValues(p.Key(), &p)
			if err != nil {
				b.Fatal(err)
			}
			rows[i] = append(vals, part, offsets[part])
			offsets[part]++
		}
		return recs, rows
	}
	cols := benchColumns()
	exec := func(q string, args ...any) {
		if _, err := store.Pool.Exec(ctx, q, args...); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	// sinkWrite hands the sink recs in polls of pollSize records, each
	// holding the next records of every partition, as a poll returns them.
	sinkWrite := func(recs []*kgo.Record) {
		for start := 0; start < len(recs); start += s.pollSize() {
			var byPart [benchPartitions][]*kgo.Record
			for _, r := range recs[start:min(start+s.pollSize(), len(recs))] {
				byPart[r.Partition] = append(byPart[r.Partition], r)
			}
			ft := kgo.FetchTopic{Topic: topics.Products}
			for p, rs := range byPart {
				if len(rs) > 0 {
					ft.Partitions = append(ft.Partitions, kgo.FetchPartition{Partition: int32(p), Records: rs, HighWatermark: offsets[p]})
				}
			}
			if err := s.handle(ctx, nil, kgo.Fetches{{Topics: []kgo.FetchTopic{ft}}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	// The raw sides commit as the sink does: without waiting for the WAL
	// flush.
	copyWrite := func(rows [][]any) {
		err := pgx.BeginFunc(ctx, store.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
				return err
			}
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"products"}, cols, pgx.CopyFromRows(rows))
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	replaceWrite := func(rows [][]any) {
		keys := make([]string, len(rows))
		for i, r := range rows {
			keys[i] = r[0].(string)
		}
		err := pgx.BeginFunc(ctx, store.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "DELETE FROM products t USING unnest($1::text[]) k(v) WHERE t.key = k.v", keys); err != nil {
				return err
			}
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"products"}, cols, pgx.CopyFromRows(rows))
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for p := range int32(benchPartitions) {
		s.stored[tp{topics.Products, p}] = pgstore.NoOffset
	}
	for _, mode := range []string{"inserts", "updates"} {
		b.Run(mode, func(b *testing.B) {
			var sink, raw, replace cost
			prev := make([][]any, 0)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				recs, rows := batch(i)
				// fill leaves the table as the side measured next finds it.
				fill := func(full bool) {
					exec("TRUNCATE products")
					if full {
						copyWrite(prev)
					}
				}
				if mode == "updates" && len(prev) == 0 {
					_, prev = batch(-1)
				}
				sides := []func(){
					func() { fill(mode == "updates"); sink.add(measure(b, store, func() { sinkWrite(recs) })) },
					func() { fill(false); raw.add(measure(b, store, func() { copyWrite(rows) })) },
				}
				if mode == "updates" {
					sides = append(sides, func() { fill(true); replace.add(measure(b, store, func() { replaceWrite(rows) })) })
				}
				if i%2 == 1 {
					slices.Reverse(sides)
				}
				for _, side := range sides {
					side()
				}
				prev = rows
			}
			var n int
			if err := store.Pool.QueryRow(ctx, "SELECT count(*) FROM products").Scan(&n); err != nil || n != benchRows {
				b.Fatalf("products holds %d rows (err %v), want %d", n, err, benchRows)
			}
			total := float64(b.N * benchRows)
			b.ReportMetric(total/sink.wall.Seconds(), "sink-rows/s")
			b.ReportMetric(total/raw.wall.Seconds(), "copy-rows/s")
			b.ReportMetric(raw.wall.Seconds()/sink.wall.Seconds(), "sink/copy")
			if mode == "updates" {
				b.ReportMetric(total/replace.wall.Seconds(), "replace-rows/s")
				b.ReportMetric(replace.wall.Seconds()/sink.wall.Seconds(), "sink/replace")
			}
			b.ReportMetric(float64(sink.cpu.Microseconds())/total, "sink-cpu-µs/row")
			b.ReportMetric(float64(raw.cpu.Microseconds())/total, "copy-cpu-µs/row")
			b.ReportMetric(float64(sink.server.Microseconds())/total, "sink-srv-µs/row")
			b.ReportMetric(float64(raw.server.Microseconds())/total, "copy-srv-µs/row")
		})
	}
}

// BenchmarkReplaceCost splits what overwriting rows costs the server, per
// row, against copying them into an emptied table, all in raw SQL on one
// connection: copy-srv-µs/row is a COPY of benchRows products into the
// emptied table. The others run in one transaction on the table holding an
// older version of every row: delete-srv-µs/row and recopy-srv-µs/row are
// the DELETE of their keys and then the same COPY (which now also checks
// each key against the version it deleted); stage-srv-µs/row and
// update-srv-µs/row are the sink's way (pgstore's write.go), a COPY into
// the connection's temporary stage and one MERGE from it, heap-only updates
// on the half-filled pages of the products table:
//
//	go test -run '^$' -bench ReplaceCost -benchtime 5x ./internal/sink/
//
// copy/replace-srv and copy/update-srv are what one backend overwriting the
// rows each way reaches against one backend copying them.
func BenchmarkReplaceCost(b *testing.B) {
	ctx := context.Background()
	store := openStore(b, pgtest.DB(b))
	rng := rand.New(rand.NewSource(1))
	cols := benchColumns()
	rowsOf := func(v int) (rows [][]any, keys []string) {
		for i := range benchRows {
			p := randProduct(rng, fmt.Sprintf("m%d", i%7), fmt.Sprintf("p%d", i), v)
			vals, err := pgstore.ProductValues(p.Key(), &p)
			if err != nil {
				b.Fatal(err)
			}
			rows, keys = append(rows, append(vals, int32(0), int64(i))), append(keys, p.Key())
		}
		return rows, keys
	}
	old, _ := rowsOf(-1)
	exec := func(q pgx.Tx, sql string, args ...any) {
		if _, err := q.Exec(ctx, sql, args...); err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
	}
	stageCols := append([]string{"del"}, cols...)
	var set, vals []string
	for _, c := range cols {
		vals = append(vals, "s."+c)
		if c != "key" {
			set = append(set, c+" = s."+c)
		}
	}
	update := "MERGE INTO products t USING stage_products s ON t.key = s.key WHEN MATCHED THEN UPDATE SET " + strings.Join(set, ", ") +
		", synced_at = now() WHEN NOT MATCHED THEN INSERT (" + strings.Join(cols, ", ") + ", synced_at) VALUES (" + strings.Join(vals, ", ") + ", now())"
	var empty, del, recopy, stage, upd cost
	for i := 0; i < b.N; i++ {
		rows, keys := rowsOf(i)
		staged := make([][]any, len(rows))
		for j, r := range rows {
			staged[j] = append([]any{false}, r...)
		}
		// Each way in turn, starting with another each iteration.
		ways := []string{"copy", "replace", "update"}
		for w := range ways {
			way := ways[(w+i)%len(ways)]
			err := pgx.BeginFunc(ctx, store.Pool, func(tx pgx.Tx) error {
				exec(tx, "TRUNCATE products")
				if way != "copy" {
					_, err := tx.CopyFrom(ctx, pgx.Identifier{"products"}, cols, pgx.CopyFromRows(old))
					return err
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			err = pgx.BeginFunc(ctx, store.Pool, func(tx pgx.Tx) error {
				// As the sink's transactions are set up.
				exec(tx, "SET LOCAL synchronous_commit = off")
				exec(tx, "SET LOCAL enable_hashjoin = off")
				exec(tx, "SET LOCAL enable_mergejoin = off")
				exec(tx, "SET LOCAL enable_seqscan = off")
				exec(tx, "SET LOCAL enable_material = off")
				exec(tx, "SET LOCAL jit = off")
				var err error
				copyInto := func(table string, cols []string, rows [][]any) func() {
					return func() { _, err = tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows)) }
				}
				switch way {
				case "copy":
					empty.add(measure(b, store, copyInto("products", cols, rows)))
				case "replace":
					del.add(measure(b, store, func() {
						exec(tx, "DELETE FROM products t USING unnest($1::text[]) k(v) WHERE t.key = k.v", keys)
					}))
					recopy.add(measure(b, store, copyInto("products", cols, rows)))
				case "update":
					stage.add(measure(b, store, copyInto("stage_products", stageCols, staged)))
					if err == nil {
						upd.add(measure(b, store, func() { exec(tx, update) }))
					}
				}
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	total := float64(b.N * benchRows)
	perRow := func(c cost) float64 { return float64(c.server.Microseconds()) / total }
	b.ReportMetric(perRow(empty), "copy-srv-µs/row")
	b.ReportMetric(perRow(del), "delete-srv-µs/row")
	b.ReportMetric(perRow(recopy), "recopy-srv-µs/row")
	b.ReportMetric(perRow(stage), "stage-srv-µs/row")
	b.ReportMetric(perRow(upd), "update-srv-µs/row")
	b.ReportMetric(perRow(empty)/(perRow(del)+perRow(recopy)), "copy/replace-srv")
	b.ReportMetric(perRow(empty)/(perRow(stage)+perRow(upd)), "copy/update-srv")
}

// benchColumns are the products table's columns in the order the raw sides'
// rows hold them.
func benchColumns() []string {
	return []string{"key", "product_id", "mall_id", "name", "description", "price_amount", "price_currency", "category", "brand", "sku",
		"tags", "images", "stock", "specifications", "created_at", "updated_at", "source_partition", "source_offset"}
}

// cost is what one side of a comparison took: wall time, CPU time in this
// process and the database's server processes together, and in the server
// processes alone.
type cost struct{ wall, cpu, server time.Duration }

func (c *cost) add(d cost) { c.wall += d.wall; c.cpu += d.cpu; c.server += d.server }

// measure runs f with the benchmark's timer on.
func measure(b *testing.B, store *pgstore.Store, f func()) cost {
	runtime.GC() // the garbage of preparing the rows is not the side's to collect
	srv0 := serverCPU(b, store)
	cpu0 := processCPU() + srv0
	t0 := time.Now()
	b.StartTimer()
	f()
	b.StopTimer()
	wall := time.Since(t0)
	srv := serverCPU(b, store)
	return cost{wall: wall, cpu: processCPU() + srv - cpu0, server: srv - srv0}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU is the CPU time the server processes of the store's database
// have used, read from /proc: 0 when the server is not on this machine.
func serverCPU(b *testing.B, store *pgstore.Store) time.Duration {
	rows, _ := store.Pool.Query(context.Background(), "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.Fatal(err)
	}
	tick := 10 * time.Millisecond // USER_HZ is 100 on Linux
	var total time.Duration
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The fields after the command name: utime and stime are the
		// 12th and 13th.
		f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+st) * tick
	}
	return total
}

// BenchmarkProductRow is the sink's per-record CPU work for a product:
// "tuple" reads the Avro body straight into its COPY tuple, as the sink
// does for records written with shopstream's own schema; "decode" decodes
// it into Go values, as it does for any other writer schema (encoding them
// for COPY comes on top).
func BenchmarkProductRow(b *testing.B) {
	ctx := context.Background()
	serde := kafkatest.NewSerde(b)
	rng := rand.New(rand.NewSource(1))
	p := randProduct(rng, "m1", "p1", 1)
	p.Tags, p.Images, p.Specifications = []string{"a", "b"}, []records.Image{{URL: "http://img/1", Alt: "one"}}, map[string]string{"colour": "red"}
	val, err := serde.Encode(ctx, nil, "shop_products", &p)
	if err != nil {
		b.Fatal(err)
	}
	key := []byte(p.Key())
	b.Run("tuple", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			if buf, err = pgstore.AppendProductTuple(buf[:0], key, val[5:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := productValues(ctx, serde, p.Key(), val); err != nil {
				b.Fatal(err)
			}
		}
	})
}
