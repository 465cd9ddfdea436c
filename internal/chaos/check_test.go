package chaos

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/records"
)

// The same seed makes the same schedule; different seeds make different
// ones, and seeds ending in 1 to 4 build on the named cases.
func TestSchedulesAreSeeded(t *testing.T) {
	a, b := NewSchedule(17), NewSchedule(17)
	if a.String() != b.String() {
		t.Fatalf("seed 17 made two schedules:\n%s\n%s", a, b)
	}
	if NewSchedule(18).String() == a.String() {
		t.Fatal("seeds 17 and 18 made the same schedule")
	}
	for i, c := range NamedCases() {
		s := NewSchedule(int64(10*i + i + 1))
		found := false
		for _, e := range s.Events {
			found = found || e.Kind == c
		}
		if s.Case != c || !found {
			t.Errorf("seed %d: case %q, want %q among its events:\n%s", 10*i+i+1, s.Case, c, s)
		}
	}
	for seed := int64(1); seed <= 200; seed++ {
		s := NewSchedule(seed)
		if n := len(s.Faults()); n == 0 {
			t.Errorf("seed %d has no fault", seed)
		}
		for _, e := range s.Events {
			if e.At < 0 || e.At > loadWindow+2*loadWindow {
				t.Errorf("seed %d: event at %s", seed, e.At)
			}
		}
	}
}

// The checker finds what it looks for: a schedule without faults checks
// clean; then a record written twice, a row deleted and a record of an
// aborted transaction passed on are each found, and counted as duplicated,
// lost and aborted read.
func TestCheckerFindsPlantedViolations(t *testing.T) {
	in := startInfra(t, 1)[0]
	s := NewSchedule(1000)
	calm := s.Events[:0]
	for _, e := range s.Events {
		if !e.fault() {
			calm = append(calm, e)
		}
	}
	s.Events = calm
	r := in.newRun(s)
	var clean checker
	res := r.execute(context.Background(), func(ctx context.Context) {
		clean = r.check(ctx)
		// Twice: an emulated product written again.
		g, err := r.inputs.generator()
		if err != nil {
			t.Fatal(err)
		}
		p := g.Product(0)
		val, err := r.in.Serde.Encode(ctx, nil, r.topics.Products, &p)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.produce(ctx, &kgo.Record{Topic: r.topics.Products, Key: []byte(p.Key()), Value: val}); err != nil {
			t.Fatal(err)
		}
		// Lost: a row the sink wrote, gone.
		conn, err := pgx.Connect(ctx, r.dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		g2 := g.Product(1)
		if tag, err := conn.Exec(ctx, "DELETE FROM products WHERE key = $1", g2.Key()); err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("delete the row of %s: %v (%d rows)", g2.Key(), err, tag.RowsAffected())
		}
		// Aborted read: a product written in a transaction that aborted,
		// then passed on to the filtered topic as if it had been read.
		ghost := records.Product{MallID: "mall-ghost", ProductID: "ghost-1", Name: "Ghost phone", Tags: []string{}, Specifications: map[string]string{}}
		gval, err := r.in.Serde.Encode(ctx, nil, r.topics.Products, &ghost)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := r.in.Clients.NewClient(kgo.TransactionalID(r.prefix + "-ghost"))
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Close()
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := tx.ProduceSync(ctx, &kgo.Record{Topic: r.topics.Products, Key: []byte(ghost.Key()), Value: gval}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := tx.EndTransaction(ctx, kgo.TryAbort); err != nil {
			t.Fatal(err)
		}
		if err := r.produce(ctx, &kgo.Record{Topic: r.topics.Filtered, Key: []byte(ghost.Key()), Value: gval,
			Headers: []kgo.RecordHeader{{Key: "shopstream.filter.version", Value: []byte("0")}}}); err != nil {
			t.Fatal(err)
		}
	})
	if len(clean.violations) != 0 || clean.lost+clean.duplicated+clean.aborted != 0 {
		t.Fatalf("the schedule without faults checked with violations: %v", clean.violations)
	}
	if res.Duplicated < 1 || res.Lost < 1 || res.AbortedReads < 1 {
		t.Fatalf("after planting one of each: %d lost, %d duplicated, %d aborted reads; violations:\n%v",
			res.Lost, res.Duplicated, res.AbortedReads, res.Violations)
	}
	t.Logf("found: %d lost, %d duplicated, %d aborted reads: %v", res.Lost, res.Duplicated, res.AbortedReads, res.Violations)
}
