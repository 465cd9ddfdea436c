// Package pgstore is shopstream's PostgreSQL store: the one pool of a
// process, the embedded schema migrations of every table (the sink's and
// the collector's), one table per materialised topic, and the batch write
// that the sink uses — every batch COPYed into a temporary staging table and
// merged with one statement, in the same transaction as the consumed
// offsets, so that a crash anywhere loses and duplicates nothing. The
// collector's queries (package collector) run over the same pool.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// NoOffset is the stored offset of a partition that has none yet.
const NoOffset = -1

// Store writes batches into the materialised tables.
type Store struct {
	Pool *pgxpool.Pool
	// AsyncCommit commits without waiting for the WAL flush. It is safe for
	// exactly-once: a commit that a server crash loses takes the rows and
	// their offsets with it, so the sink reads those records again.
	AsyncCommit bool
}

// Open connects to dsn, applies the migrations and prepares each
// connection's staging tables. A process opens it once and shares it: the
// sink writes through it and the collector, the product API and status query
// over its Pool. It returns the versions of the migrations it applied.
func Open(ctx context.Context, dsn string) (*Store, []int, error) {
	if dsn == "" {
		return nil, nil, errors.New("no PostgreSQL DSN: set DATABASE_DSN / --database-dsn")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("parse DATABASE_DSN: %w", err)
	}
	cfg.AfterConnect = createStaging
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to PostgreSQL at %s: %w", describe(cfg.ConnConfig), err)
	}
	applied, err := Migrate(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("migrate the database at %s: %w", describe(cfg.ConnConfig), err)
	}
	return &Store{Pool: pool, AsyncCommit: true}, applied, nil
}

func describe(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

// Close closes the pool.
func (s *Store) Close() { s.Pool.Close() }

// createStaging creates the session's staging tables: unlogged by nature,
// emptied at every commit.
func createStaging(ctx context.Context, conn *pgx.Conn) error {
	var b strings.Builder
	for _, t := range Tables {
		fmt.Fprintf(&b, "CREATE TEMP TABLE %s (del boolean NOT NULL", t.stage())
		for _, c := range t.Columns {
			fmt.Fprintf(&b, ", %s %s", c.Name, c.Type)
		}
		b.WriteString(", source_partition integer NOT NULL, source_offset bigint NOT NULL) ON COMMIT DELETE ROWS;\n")
	}
	if _, err := conn.Exec(ctx, b.String()); err != nil {
		return fmt.Errorf("create staging tables: %w", err)
	}
	return nil
}

func (t *Table) stage() string { return "stage_" + t.Name }

func (t *Table) stageColumns() []string {
	cols := make([]string, 0, len(t.Columns)+3)
	cols = append(cols, "del")
	for _, c := range t.Columns {
		cols = append(cols, c.Name)
	}
	return append(cols, "source_partition", "source_offset")
}

// mergeSQL deletes the tombstoned rows and upserts the others. When a
// tombstone deletes by the key, both fit one statement: after compaction a
// key is either deleted or upserted, never both. Searches are deleted by user
// and upserted by search id, so they take two statements in order.
func (t *Table) mergeSQL() []string {
	var cols, set []string
	for _, c := range t.Columns {
		cols = append(cols, c.Name)
		if c.Name != t.Key {
			set = append(set, c.Name+" = EXCLUDED."+c.Name)
		}
	}
	cols = append(cols, "source_partition", "source_offset")
	set = append(set, "source_partition = EXCLUDED.source_partition", "source_offset = EXCLUDED.source_offset", "synced_at = EXCLUDED.synced_at")
	del := fmt.Sprintf("DELETE FROM %s t USING %s s WHERE s.del AND t.%s = s.%s", t.Name, t.stage(), t.TombstoneBy, t.TombstoneBy)
	ins := fmt.Sprintf("INSERT INTO %s (%s, synced_at) SELECT %s, now() FROM %s WHERE NOT del ON CONFLICT (%s) DO UPDATE SET %s",
		t.Name, strings.Join(cols, ", "), strings.Join(cols, ", "), t.stage(), t.Key, strings.Join(set, ", "))
	if t.TombstoneBy == t.Key {
		return []string{"WITH deleted AS (" + del + ") " + ins}
	}
	return []string{del, ins}
}

// Offset is one partition's progress in a batch: the batch holds its
// records from Stored (the offset the store had, or NoOffset) up to Next.
type Offset struct {
	Topic     string
	Partition int32
	Stored    int64
	Next      int64
}

// Batch is what one transaction writes.
type Batch struct {
	Group   string
	Rows    map[*Table][]Row
	Offsets []Offset
	// BeforeCommit, when set, runs after every row is written and before
	// the commit, with the rows PostgreSQL refused; an error rolls the
	// transaction back. The sink sends the refused rows' records to its
	// dead-letter topic there, so they are never lost between the two.
	BeforeCommit func(ctx context.Context, rejected []Rejected) error
}

// Rejected is a row that PostgreSQL refused as invalid data.
type Rejected struct {
	Table  *Table
	Row    Row
	Reason string
}

// Result says what a committed batch did.
type Result struct {
	// Upserts and Deletes count the rows written per table, after
	// compaction (only the last record of a key in a batch is written).
	Upserts, Deletes map[string]int
	Rejected         []Rejected
}

// OffsetConflictError says that a partition's stored offset is not the one
// the batch started from: another consumer wrote it, and this batch must be
// dropped and the partition read again from the store.
type OffsetConflictError struct {
	Topic     string
	Partition int32
	Expected  int64
}

func (e *OffsetConflictError) Error() string {
	return fmt.Sprintf("offset of %s/%d is no longer %d: another consumer advanced it", e.Topic, e.Partition, e.Expected)
}

// IsDataError says whether PostgreSQL refused a value (SQLSTATE classes 22
// and 23), which retrying cannot fix.
func IsDataError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23"))
}

// Apply writes a batch in one transaction: it advances every partition's
// offset from Stored to Next (failing with *OffsetConflictError when the
// store has another), stages each table's rows with COPY and merges them.
// When PostgreSQL refuses a value, the batch is written again row by row
// and the refused rows are reported instead of written.
func (s *Store) Apply(ctx context.Context, b *Batch) (Result, error) {
	rows := make(map[*Table][]Row, len(b.Rows))
	for t, rs := range b.Rows {
		rows[t] = compact(t, rs)
	}
	res, err := s.apply(ctx, b, rows, false)
	if err != nil && IsDataError(err) {
		return s.apply(ctx, b, rows, true)
	}
	return res, err
}

func (s *Store) apply(ctx context.Context, b *Batch, rows map[*Table][]Row, rowByRow bool) (Result, error) {
	res := Result{Upserts: map[string]int{}, Deletes: map[string]int{}}
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := s.advance(ctx, tx, b); err != nil {
			return err
		}
		for _, t := range Tables { // a fixed order, so concurrent writers lock tables alike
			rs := rows[t]
			if len(rs) == 0 {
				continue
			}
			if !rowByRow {
				if err := writeRows(ctx, tx, t, rs); err != nil {
					return fmt.Errorf("write %d rows into %s: %w", len(rs), t.Name, err)
				}
				count(&res, t, rs)
				continue
			}
			for _, r := range rs {
				err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error { // a savepoint
					return writeRows(ctx, sp, t, []Row{r})
				})
				switch {
				case err == nil:
					count(&res, t, []Row{r})
				case IsDataError(err):
					res.Rejected = append(res.Rejected, Rejected{Table: t, Row: r, Reason: "PostgreSQL refused the row: " + err.Error()})
				default:
					return fmt.Errorf("write a row into %s: %w", t.Name, err)
				}
			}
		}
		if b.BeforeCommit != nil {
			return b.BeforeCommit(ctx, res.Rejected)
		}
		return nil
	})
	return res, err
}

func count(res *Result, t *Table, rs []Row) {
	for _, r := range rs {
		if r.Deleted {
			res.Deletes[t.Name]++
		} else {
			res.Upserts[t.Name]++
		}
	}
}

// advance moves each partition's stored offset from Stored to Next, in one
// round trip. The row lock it takes makes a concurrent writer of the same
// partition wait for this transaction, then fail its own check.
func (s *Store) advance(ctx context.Context, tx pgx.Tx, b *Batch) error {
	var q pgx.Batch
	if s.AsyncCommit {
		q.Queue("SET LOCAL synchronous_commit = off")
	}
	for _, o := range b.Offsets {
		if o.Stored == NoOffset {
			q.Queue(`INSERT INTO sink_offsets (consumer_group, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
				ON CONFLICT DO NOTHING`, b.Group, o.Topic, o.Partition, o.Next)
		} else {
			q.Queue(`UPDATE sink_offsets SET next_offset = $4, updated_at = now()
				WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND next_offset = $5`,
				b.Group, o.Topic, o.Partition, o.Next, o.Stored)
		}
	}
	br := tx.SendBatch(ctx, &q)
	defer br.Close()
	if s.AsyncCommit {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("set synchronous_commit: %w", err)
		}
	}
	for _, o := range b.Offsets {
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("advance the offset of %s/%d: %w", o.Topic, o.Partition, err)
		}
		if tag.RowsAffected() != 1 {
			return &OffsetConflictError{Topic: o.Topic, Partition: o.Partition, Expected: o.Stored}
		}
	}
	return br.Close()
}

func writeRows(ctx context.Context, tx pgx.Tx, t *Table, rs []Row) error {
	n := len(t.Columns)
	src := make([][]any, len(rs))
	for i, r := range rs {
		v := make([]any, n+3)
		v[0] = r.Deleted
		if r.Deleted {
			v[1+t.tombIdx] = r.Key
		} else {
			copy(v[1:], r.Values)
		}
		v[n+1], v[n+2] = r.Partition, r.Offset
		src[i] = v
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{t.stage()}, t.stageColumns(), pgx.CopyFromRows(src)); err != nil {
		return fmt.Errorf("copy into %s: %w", t.stage(), err)
	}
	for _, q := range t.mergeSQL() {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("merge into %s: %w", t.Name, err)
		}
	}

	// Rows staged by a savepoint that commits stay until the transaction
	// ends; empty the stage so the next row is merged alone.
	if len(rs) == 1 {
		if _, err := tx.Exec(ctx, "TRUNCATE "+t.stage()); err != nil {
			return fmt.Errorf("empty %s: %w", t.stage(), err)
		}
	}
	return nil
}

// compact keeps the effect of the last record per key, in order. For tables
// whose tombstones delete by another column (searches by user), a
// tombstone also drops the earlier upserts it deletes.
func compact(t *Table, rs []Row) []Row {
	if len(rs) < 2 {
		return rs
	}
	if t.TombstoneBy == t.Key {
		last := make(map[string]int, len(rs))
		for i, r := range rs {
			last[r.Key] = i
		}
		if len(last) == len(rs) {
			return rs
		}
		out := make([]Row, 0, len(last))
		for i, r := range rs {
			if last[r.Key] == i {
				out = append(out, r)
			}
		}
		return out
	}
	var out []Row
	at := make(map[string]int) // upserted key -> index in out
	deleted := make(map[string]int)
	for _, r := range rs {
		if r.Deleted {
			for i := range out {
				if !out[i].Deleted && out[i].Values[t.tombIdx] == r.Key {
					out[i].Key = "" // dropped below
				}
			}
			if j, ok := deleted[r.Key]; ok {
				out[j] = r
				continue
			}
			deleted[r.Key] = len(out)
			out = append(out, r)
			continue
		}
		if j, ok := at[r.Key]; ok && out[j].Key != "" {
			out[j] = r
			continue
		}
		at[r.Key] = len(out)
		out = append(out, r)
	}
	kept := out[:0]
	for _, r := range out {
		if r.Key != "" {
			kept = append(kept, r)
		}
	}
	return kept
}

// Offsets returns the stored next offsets of a group's partitions of topics.
func (s *Store) Offsets(ctx context.Context, group string, topics []string) (map[string]map[int32]int64, error) {
	rows, _ := s.Pool.Query(ctx, `SELECT topic, partition, next_offset FROM sink_offsets
		WHERE consumer_group = $1 AND topic = ANY($2)`, group, topics)
	out := make(map[string]map[int32]int64, len(topics))
	var topic string
	var partition int32
	var next int64
	_, err := pgx.ForEachRow(rows, []any{&topic, &partition, &next}, func() error {
		if out[topic] == nil {
			out[topic] = map[int32]int64{}
		}
		out[topic][partition] = next
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the stored offsets of group %s: %w", group, err)
	}
	return out, nil
}
