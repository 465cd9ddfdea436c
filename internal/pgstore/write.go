package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// How a batch's rows reach a table, in the batch's transaction:
//
//   - Tombstones: one DELETE of their keys.
//   - Upserts: COPY (binary) straight into the table, inside a savepoint.
//     When a key already exists the COPY fails with a unique violation; the
//     savepoint is rolled back and the rows are written as an update
//     instead: COPY into the connection's temporary stage, then one MERGE
//     from it, which updates the rows whose keys exist and inserts the
//     others. A table whose last batch needed the update starts with it
//     (remembered per table in the Store) until one finds none of its keys.
//   - The upsert (INSERT … ON CONFLICT DO UPDATE from the stage) is the
//     fallback when the MERGE meets a unique violation: another transaction
//     inserted one of the keys after the MERGE found it missing, which only
//     a key written from two partitions at once can cause.
//
// One COPY is what a raw load costs. An update costs more whichever way it
// is written, because PostgreSQL writes a new row version and expires the
// old one; the product tables are filled to half their pages
// (migrations/0005) so that the new version fits beside the old one, which
// makes it a heap-only update: no new index entry, no uniqueness check,
// the page pruned of the old version when it is next read. Deleting the
// old rows and copying the new ones (the previous way) cannot be
// heap-only and cost half as much again on the server (README, "sink").
// Whichever way, every column is written from the record, synced_at from
// now().

// copySignature starts every binary COPY stream: the signature, no flags,
// no header extension.
var copySignature = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// replacing remembers, per table, that its last batch replaced rows.
type replacing struct{ m sync.Map } // *Table -> *atomic.Bool

func (r *replacing) of(t *Table) *atomic.Bool {
	if v, ok := r.m.Load(t); ok {
		return v.(*atomic.Bool)
	}
	v, _ := r.m.LoadOrStore(t, new(atomic.Bool))
	return v.(*atomic.Bool)
}

// txn is a transaction on one connection whose statements are queued and
// sent together, so that a batch costs few round trips: BEGIN, the
// settings, the offsets and the first table's deletes go in one.
type txn struct {
	conn *pgx.Conn
	q    pgx.Batch
}

// inTx runs f in a transaction and commits it.
func (s *Store) inTx(ctx context.Context, f func(tx *txn) error) error {
	c, err := s.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	// Release closes, rather than reuses, a connection left in a
	// transaction.
	defer c.Release()
	tx := &txn{conn: c.Conn()}
	tx.q.Queue("BEGIN")
	// The deletes and the updates join a batch's keys to an indexed
	// column, and the plan that scales is a probe of the index per key.
	// Left to the statistics, the planner takes a table whose statistics
	// are stale (one just TRUNCATEd and refilled, or analysed while a COPY
	// into it was running) for small, and hashes all of it, or scans all
	// of it once per key (materialised or not), instead. A sequential scan
	// stays possible where it is the only way (the stage's).
	tx.q.Queue("SET LOCAL enable_hashjoin = off")
	tx.q.Queue("SET LOCAL enable_mergejoin = off")
	tx.q.Queue("SET LOCAL enable_seqscan = off")
	tx.q.Queue("SET LOCAL enable_material = off")
	// Those settings make every plan look dear; compiling one would cost
	// more than running it.
	tx.q.Queue("SET LOCAL jit = off")
	err = f(tx)
	if err == nil {
		tx.q.Queue("COMMIT").Exec(func(tag pgconn.CommandTag) error {
			if tag.String() != "COMMIT" {
				return errors.New("commit: PostgreSQL rolled the transaction back")
			}
			return nil
		})
		if err = tx.flush(ctx); err == nil {
			return nil
		}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = tx.conn.Exec(rctx, "ROLLBACK")
	return err
}

// flush sends the queued statements.
func (tx *txn) flush(ctx context.Context) error {
	if tx.q.Len() == 0 {
		return nil
	}
	err := tx.conn.SendBatch(ctx, &tx.q).Close()
	tx.q = pgx.Batch{}
	return err
}

// savepoint runs f inside a savepoint. When f fails on the data (SQLSTATE
// classes 22 and 23), the savepoint is rolled back and the transaction
// goes on; f's error is returned either way. A savepoint that succeeds is
// left open: a transaction nests a few (one or two a table), and releasing
// each would cost a round trip.
func (tx *txn) savepoint(ctx context.Context, f func() error) error {
	tx.q.Queue("SAVEPOINT pgstore_write")
	err := f()
	if err == nil || !IsDataError(err) {
		return err
	}
	tx.q = pgx.Batch{}
	if _, rerr := tx.conn.Exec(ctx, "ROLLBACK TO SAVEPOINT pgstore_write; RELEASE SAVEPOINT pgstore_write"); rerr != nil {
		// err first: what failed is what the caller classifies.
		return fmt.Errorf("%w (rolling back to the savepoint: %v)", err, rerr)
	}
	return err
}

// copyIn sends the queued statements, then a COPY.
func (tx *txn) copyIn(ctx context.Context, table, columns string, stream io.Reader) error {
	if err := tx.flush(ctx); err != nil {
		return err
	}
	q := "COPY " + table + " (" + columns + ") FROM STDIN (FORMAT binary)"
	if _, err := tx.conn.PgConn().CopyFrom(ctx, stream, q); err != nil {
		return fmt.Errorf("copy into %s: %w", table, err)
	}
	return nil
}

// encodeTuples gives every upsert its COPY tuple, encoding the Values of
// those that came without one. A value that cannot be encoded (a time
// outside PostgreSQL's range) rejects its row, as PostgreSQL would.
func encodeTuples(t *Table, rs []Row) (kept []Row, rejected []Rejected, err error) {
	if !slices.ContainsFunc(rs, func(r Row) bool { return !r.Deleted && r.Tuple == nil }) {
		return rs, nil, nil
	}
	kept = rs[:0:0]
	for _, r := range rs {
		if r.Deleted || r.Tuple != nil {
			kept = append(kept, r)
			continue
		}
		r.Tuple, err = appendValues(nil, t, r.Values)
		var inv *InvalidError
		switch {
		case errors.As(err, &inv):
			rejected = append(rejected, Rejected{Table: t, Row: r, Reason: inv.Reason})
			continue
		case err != nil:
			return nil, nil, err
		}
		kept = append(kept, r)
	}
	return kept, rejected, nil
}

// write writes a table's compacted rows in tx.
func (s *Store) write(ctx context.Context, tx *txn, t *Table, rs []Row) error {
	var tombstones []string
	ups := rs
	if slices.ContainsFunc(rs, func(r Row) bool { return r.Deleted }) {
		ups = make([]Row, 0, len(rs))
		for _, r := range rs {
			if r.Deleted {
				tombstones = append(tombstones, r.Key)
			} else {
				ups = append(ups, r)
			}
		}
	}
	if len(tombstones) > 0 {
		queueDelete(tx, t, t.TombstoneBy, tombstones)
	}
	if len(ups) == 0 {
		return nil
	}
	columns := t.copyColumns(false)
	replace := s.replacing.of(t)
	if !replace.Load() {
		err := tx.savepoint(ctx, func() error { return tx.copyIn(ctx, t.Name, columns, newCopyStream(t, ups, false)) })
		if !isUniqueViolation(err) {
			return err
		}
		replace.Store(true)
	}
	updated, err := update(ctx, tx, t, ups)
	if err == nil && updated == 0 {
		replace.Store(false) // only new keys: the next batch tries the COPY alone
	}
	return err
}

// update stages upserts with COPY and writes them with one MERGE: the rows
// whose keys exist are updated, the others inserted. It returns how many it
// updated.
func update(ctx context.Context, tx *txn, t *Table, ups []Row) (updated int64, err error) {
	// Staged outside the savepoint, so that the fallback reads the stage.
	if err := tx.copyIn(ctx, t.stage(), t.copyColumns(true), newCopyStream(t, ups, true)); err != nil {
		return 0, err
	}
	err = tx.savepoint(ctx, func() error {
		// The backend's own statistics, read before and after, say how
		// many of the rows existed (a MERGE's tag counts both kinds). The
		// counts may hold earlier transactions' updates not yet reported,
		// hence the difference.
		var before, after int64
		stats := "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relid = $1::regclass"
		tx.q.Queue(stats, t.Name).QueryRow(func(row pgx.Row) error { return row.Scan(&before) })
		tx.q.Queue(t.mergeSQL())
		tx.q.Queue(stats, t.Name).QueryRow(func(row pgx.Row) error { return row.Scan(&after) })
		err := tx.flush(ctx)
		updated = after - before
		return err
	})
	if !isUniqueViolation(err) {
		return updated, err
	}
	// Another transaction inserted one of the keys after the MERGE found
	// it missing, which only a key written from two partitions at once
	// can cause.
	if _, err := tx.conn.Exec(ctx, t.upsertSQL()); err != nil {
		return 0, fmt.Errorf("merge into %s: %w", t.Name, err)
	}
	return int64(len(ups)), nil
}

// writeOne writes a single row the robust way (the upsert), for a batch that
// is written row by row to find the rows PostgreSQL refuses.
func writeOne(ctx context.Context, tx *txn, t *Table, r Row) error {
	if r.Deleted {
		queueDelete(tx, t, t.TombstoneBy, []string{r.Key})
		return tx.flush(ctx)
	}
	if err := upsertStaged(ctx, tx, t, []Row{r}); err != nil {
		return err
	}
	// Rows staged in a savepoint that is released stay until the
	// transaction ends; empty the stage so the next row is upserted alone.
	tx.q.Queue("TRUNCATE " + t.stage())
	return tx.flush(ctx)
}

// upsertStaged stages rows with COPY and upserts them with one statement.
func upsertStaged(ctx context.Context, tx *txn, t *Table, ups []Row) error {
	if err := tx.copyIn(ctx, t.stage(), t.copyColumns(true), newCopyStream(t, ups, true)); err != nil {
		return err
	}
	if _, err := tx.conn.Exec(ctx, t.upsertSQL()); err != nil {
		return fmt.Errorf("merge into %s: %w", t.Name, err)
	}
	return nil
}

// queueDelete queues the deletion of the rows whose column equals one of
// keys.
func queueDelete(tx *txn, t *Table, column string, keys []string) {
	tx.q.Queue(fmt.Sprintf("DELETE FROM %s t USING unnest($1::text[]) k(v) WHERE t.%s = k.v", t.Name, column), keys)
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// copyStream is the binary COPY data of upserts: their tuples and where
// they came from, after the stage's leading del column when staged. It is
// assembled as the connection reads it, so the server starts on the first
// rows at once.
type copyStream struct {
	t      *Table
	ups    []Row
	staged bool
	next   int    // the next row to assemble
	buf    []byte // assembled, not yet read
	done   bool
}

func newCopyStream(t *Table, ups []Row, staged bool) *copyStream {
	return &copyStream{t: t, ups: ups, staged: staged, buf: append(make([]byte, 0, 64<<10), copySignature...)}
}

func (c *copyStream) Read(p []byte) (int, error) {
	fields := int16(len(c.t.Columns) + 2)
	if c.staged {
		fields++
	}
	for len(c.buf) < len(p) && !c.done {
		if c.next == len(c.ups) {
			c.buf = appendInt16(c.buf, -1)
			c.done = true
			break
		}
		r := &c.ups[c.next]
		c.next++
		c.buf = appendInt16(c.buf, fields)
		if c.staged {
			c.buf = fieldBool(c.buf, false)
		}
		c.buf = append(c.buf, r.Tuple...)
		c.buf = fieldInt4(c.buf, r.Partition)
		c.buf = fieldInt8(c.buf, r.Offset)
	}
	if len(c.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.buf)
	c.buf = c.buf[:copy(c.buf, c.buf[n:])]
	return n, nil
}

// copyColumns lists what a COPY stream of t holds.
func (t *Table) copyColumns(staged bool) string {
	var b strings.Builder
	if staged {
		b.WriteString("del, ")
	}
	for _, c := range t.Columns {
		b.WriteString(c.Name)
		b.WriteString(", ")
	}
	b.WriteString("source_partition, source_offset")
	return b.String()
}

func (t *Table) stage() string { return "stage_" + t.Name }

// upsertSQL upserts the staged rows with INSERT … ON CONFLICT DO UPDATE,
// which waits for a concurrent writer of a key instead of failing.
func (t *Table) upsertSQL() string {
	cols, set := t.sqlLists("EXCLUDED")
	return fmt.Sprintf("INSERT INTO %s (%s, synced_at) SELECT %s, now() FROM %s ON CONFLICT (%s) DO UPDATE SET %s",
		t.Name, strings.Join(cols, ", "), strings.Join(cols, ", "), t.stage(), t.Key, strings.Join(set, ", "))
}

// mergeSQL updates the rows whose keys are staged and inserts the others.
// Written as a MERGE, the join is a left join from the stage, which a
// nested loop can only run with the stage outside: one probe of the
// table's key index per staged row (the transaction turns hash and merge
// joins and sequential scans off), whatever the planner believes the
// table's size to be. (An
// UPDATE … FROM the stage, an inner join, was planned the other way round
// when the statistics said the table was empty: every row of the table
// compared with every staged row, a minute for 3,000 rows.)
func (t *Table) mergeSQL() string {
	cols, set := t.sqlLists("s")
	vals := make([]string, len(cols))
	for i, c := range cols {
		vals[i] = "s." + c
	}
	return fmt.Sprintf("MERGE INTO %s t USING %s s ON t.%s = s.%s WHEN MATCHED THEN UPDATE SET %s WHEN NOT MATCHED THEN INSERT (%s, synced_at) VALUES (%s, now())",
		t.Name, t.stage(), t.Key, t.Key, strings.Join(set, ", "), strings.Join(cols, ", "), strings.Join(vals, ", "))
}

// sqlLists returns the columns a staged row fills, and their assignments
// from the row named src for an update.
func (t *Table) sqlLists(src string) (cols, set []string) {
	for _, c := range t.Columns {
		cols = append(cols, c.Name)
		if c.Name != t.Key {
			set = append(set, c.Name+" = "+src+"."+c.Name)
		}
	}
	cols = append(cols, "source_partition", "source_offset")
	set = append(set, "source_partition = "+src+".source_partition", "source_offset = "+src+".source_offset", "synced_at = now()")
	return cols, set
}
