// Package pgstore is shopstream's PostgreSQL store: the one pool of a
// process, the embedded schema migrations of every table (the sink's and
// the collector's), one table per materialised topic, and the batch write
// that the sink uses — every batch COPYed in binary straight into its
// tables (replacing the rows whose keys exist), in the same transaction as
// the consumed offsets, so that a crash anywhere loses and duplicates
// nothing. The collector's queries (package collector) run over the same
// pool.
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

	replacing replacing
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
	// The sink records the dead letters it is about to send on a second
	// connection while a batch's transaction holds the first
	// (OweDeadLetters): a pool of one would wait for itself.
	cfg.MaxConns = max(cfg.MaxConns, 2)
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
// store has another) and writes each table's rows (see write.go). When
// PostgreSQL refuses a value, the batch is written again row by row and the
// refused rows are reported instead of written.
func (s *Store) Apply(ctx context.Context, b *Batch) (Result, error) {
	rows := make(map[*Table][]Row, len(b.Rows))
	var rejected []Rejected
	for t, rs := range b.Rows {
		kept, rej, err := encodeTuples(t, compact(t, rs))
		if err != nil {
			return Result{}, err
		}
		rows[t], rejected = kept, append(rejected, rej...)
	}
	res, err := s.apply(ctx, b, rows, rejected, false)
	if err != nil && IsDataError(err) {
		return s.apply(ctx, b, rows, rejected, true)
	}
	return res, err
}

func (s *Store) apply(ctx context.Context, b *Batch, rows map[*Table][]Row, rejected []Rejected, rowByRow bool) (Result, error) {
	res := Result{Upserts: map[string]int{}, Deletes: map[string]int{}, Rejected: append([]Rejected(nil), rejected...)}
	err := s.inTx(ctx, func(tx *txn) error {
		s.advance(tx, b)
		for _, t := range Tables { // a fixed order, so concurrent writers lock tables alike
			rs := rows[t]
			if len(rs) == 0 {
				continue
			}
			if !rowByRow {
				if err := s.write(ctx, tx, t, rs); err != nil {
					return fmt.Errorf("write %d rows into %s: %w", len(rs), t.Name, err)
				}
				count(&res, t, rs)
				continue
			}
			for _, r := range rs {
				err := tx.savepoint(ctx, func() error { return writeOne(ctx, tx, t, r) })
				switch {
				case err == nil:
					// Released, so that thousands of rows do not nest as
					// many subtransactions.
					tx.q.Queue("RELEASE SAVEPOINT pgstore_write")
					count(&res, t, []Row{r})
				case IsDataError(err):
					res.Rejected = append(res.Rejected, Rejected{Table: t, Row: r, Reason: "PostgreSQL refused the row: " + err.Error()})
				default:
					return fmt.Errorf("write a row into %s: %w", t.Name, err)
				}
			}
		}
		if err := tx.flush(ctx); err != nil {
			return err
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

// advance queues the moves of each partition's stored offset from Stored
// to Next; they run with the transaction's first statements. The row lock
// an update takes makes a concurrent writer of the same partition wait for
// this transaction, then fail its own check.
func (s *Store) advance(tx *txn, b *Batch) {
	if s.AsyncCommit {
		tx.q.Queue("SET LOCAL synchronous_commit = off")
	}
	for _, o := range b.Offsets {
		var qq *pgx.QueuedQuery
		if o.Stored == NoOffset {
			qq = tx.q.Queue(`INSERT INTO sink_offsets (consumer_group, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
				ON CONFLICT DO NOTHING`, b.Group, o.Topic, o.Partition, o.Next)
		} else {
			qq = tx.q.Queue(`UPDATE sink_offsets SET next_offset = $4, updated_at = now()
				WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND next_offset = $5`,
				b.Group, o.Topic, o.Partition, o.Next, o.Stored)
		}
		qq.Exec(func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() != 1 {
				return &OffsetConflictError{Topic: o.Topic, Partition: o.Partition, Expected: o.Stored}
			}
			return nil
		})
	}
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
