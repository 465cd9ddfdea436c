package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/catalog"
	"github.com/shopstream/shopstream/internal/pgstore"
	"github.com/shopstream/shopstream/internal/records"
)

// Store is the collector's state in PostgreSQL; it is also the product API's
// catalog.Reader. Its tables are migrations of package pgstore, applied when
// the process opens its one pool.
type Store struct {
	pool *pgxpool.Pool
}

var _ catalog.Reader = (*Store)(nil)

// NewStore queries the collector's tables over db's pool, which pgstore.Open
// migrated. Closing db closes it.
func NewStore(db *pgstore.Store) *Store { return &Store{pool: db.Pool} }

const productColumns = `product, status, reason, images, collected_at, updated_at`

func scanProduct(row pgx.Row) (catalog.Product, error) {
	var (
		p           catalog.Product
		prod, imgs  []byte
		status      string
		collectedAt *time.Time
	)
	if err := row.Scan(&prod, &status, &p.Reason, &imgs, &collectedAt, &p.UpdatedAt); err != nil {
		return p, err
	}
	if err := json.Unmarshal(prod, &p.Product); err != nil {
		return p, fmt.Errorf("decode stored product: %w", err)
	}
	if err := json.Unmarshal(imgs, &p.Images); err != nil {
		return p, fmt.Errorf("decode stored images: %w", err)
	}
	p.Status = catalog.Status(status)
	if collectedAt != nil {
		p.CollectedAt = collectedAt.UTC()
	}
	p.UpdatedAt = p.UpdatedAt.UTC()
	return p, nil
}

func collect(rows pgx.Rows) ([]catalog.Product, error) {
	defer rows.Close()
	var out []catalog.Product
	for rows.Next() {
		p, err := scanProduct(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// ListComplete implements catalog.Reader.
func (s *Store) ListComplete(ctx context.Context, q catalog.ListQuery) ([]catalog.Product, error) {
	after := catalog.Identity{}
	hasAfter := q.After != nil
	if hasAfter {
		after = *q.After
	}
	rows, err := s.pool.Query(ctx, `SELECT `+productColumns+` FROM collected_products
		WHERE status = 'complete'
		  AND ($1 = '' OR mall_id = $1)
		  AND (NOT $2 OR (mall_id, product_id) > ($3, $4))
		ORDER BY mall_id, product_id
		LIMIT $5`, q.MallID, hasAfter, after.MallID, after.ProductID, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("list complete products: %w", err)
	}
	out, err := collect(rows)
	if err != nil {
		return nil, fmt.Errorf("list complete products: %w", err)
	}
	return out, nil
}

// Lookup implements catalog.Reader.
func (s *Store) Lookup(ctx context.Context, productID, mallID string) ([]catalog.Product, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+productColumns+` FROM collected_products
		WHERE product_id = $1 AND ($2 = '' OR mall_id = $2)
		ORDER BY mall_id`, productID, mallID)
	if err != nil {
		return nil, fmt.Errorf("look up product %s: %w", productID, err)
	}
	out, err := collect(rows)
	if err != nil {
		return nil, fmt.Errorf("look up product %s: %w", productID, err)
	}
	return out, nil
}

// prior is what the collector knew about a record key before this batch.
type prior struct {
	product *catalog.Product // nil when unknown
	orphans []string         // blob keys waiting to be deleted
}

// load reads the state of every key of a batch in one round trip.
func (s *Store) load(ctx context.Context, keys []string) (map[string]*prior, error) {
	out := make(map[string]*prior, len(keys))
	stored := make([]string, 0, len(keys))
	for _, k := range keys {
		out[k] = &prior{}
		// A key PostgreSQL cannot take as text is in no row, and asking
		// for it would fail the whole query (SQLSTATE 22021).
		if utf8.ValidString(k) && !strings.ContainsRune(k, 0) {
			stored = append(stored, k)
		}
	}
	keys = stored
	batch := &pgx.Batch{}
	batch.Queue(`SELECT record_key, `+productColumns+` FROM collected_products WHERE record_key = ANY($1)`, keys)
	batch.Queue(`SELECT record_key, blob_key FROM collector_orphan_blobs WHERE record_key = ANY($1)`, keys)
	br := s.pool.SendBatch(ctx, batch)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("load collector state: %w", err)
	}
	for rows.Next() {
		var key string
		var p catalog.Product
		var prod, imgs []byte
		var status string
		var collectedAt *time.Time
		if err := rows.Scan(&key, &prod, &status, &p.Reason, &imgs, &collectedAt, &p.UpdatedAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load collector state: %w", err)
		}
		if err := errors.Join(json.Unmarshal(prod, &p.Product), json.Unmarshal(imgs, &p.Images)); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load collector state of %s: %w", key, err)
		}
		p.Status = catalog.Status(status)
		if collectedAt != nil {
			p.CollectedAt = *collectedAt
		}
		if pr, ok := out[key]; ok {
			pr.product = &p
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load collector state: %w", err)
	}
	rows, err = br.Query()
	if err != nil {
		return nil, fmt.Errorf("load orphan blobs: %w", err)
	}
	for rows.Next() {
		var key, blob string
		if err := rows.Scan(&key, &blob); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load orphan blobs: %w", err)
		}
		if pr, ok := out[key]; ok {
			pr.orphans = append(pr.orphans, blob)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load orphan blobs: %w", err)
	}
	return out, nil
}

// change is what one batch does to one key: the product's new state
// (product), or its deletion (remove), or neither; the blobs it keeps and
// orphans; its record parked (park) or any parked record of the key
// forgotten (unpark).
type change struct {
	key     string
	product *catalog.Product
	remove  bool
	keep    []string // blob keys the new state references
	orphans []string // blob keys no longer referenced
	// fresh are the blobs this change stored that the state before did not
	// reference: orphans if PostgreSQL refuses the change.
	fresh []string
	// orphansOnly records orphans (and unparks) and touches no product row.
	orphansOnly bool
	park        *kgo.Record
	unpark      bool
	// finishes is the parked record whose product this change finishes:
	// the change is written only while the record is still parked at that
	// offset and owned by owner (the job's token); otherwise another
	// instance resumed it, or a newer record replaced it, and the change is
	// dropped. owner is also what park writes.
	finishes *kgo.Record
	owner    string
}

// refusal is a change PostgreSQL refused as invalid data.
type refusal struct {
	key    string
	reason string
}

// apply writes a batch's changes in one transaction: rows upserted or
// deleted, orphaned blobs recorded, re-referenced blobs un-orphaned. When
// PostgreSQL refuses a value (SQLSTATE classes 22 and 23, which no retry
// fixes), the batch is written again change by change, each in a savepoint,
// and the refused ones are returned instead of written, as the sink does:
// one record must not stop every record behind it. A change that finishes
// a parked record its job no longer owns is not written and its key is
// returned in lost.
func (s *Store) apply(ctx context.Context, topic string, changes []change) (refused []refusal, lost []string, err error) {
	if len(changes) == 0 {
		return nil, nil, nil
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var owned []change
		if owned, lost, err = ownedOnly(ctx, tx, topic, changes); err != nil {
			return err
		}
		batch := &pgx.Batch{}
		for _, c := range owned {
			if err := queueChange(batch, topic, c); err != nil {
				return err
			}
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("write collector state: %w", err)
		}
		return nil
	})
	if err == nil || !pgstore.IsDataError(err) {
		return nil, lost, err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		refused = refused[:0]
		var owned []change
		if owned, lost, err = ownedOnly(ctx, tx, topic, changes); err != nil {
			return err
		}
		for _, c := range owned {
			err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error { // a savepoint
				batch := &pgx.Batch{}
				if err := queueChange(batch, topic, c); err != nil {
					return err
				}
				return sp.SendBatch(ctx, batch).Close()
			})
			switch {
			case err == nil:
				continue
			case !pgstore.IsDataError(err):
				return fmt.Errorf("write collector state of %s: %w", c.key, err)
			}
			refused = append(refused, refusal{key: c.key, reason: "PostgreSQL refused the product's state: " + err.Error()})
			if len(c.fresh) == 0 {
				continue
			}
			// The images it stored are referenced by nothing now; record
			// them for deletion, under a key PostgreSQL takes.
			orphans := change{key: strings.ToValidUTF8(strings.ReplaceAll(c.key, "\x00", ""), ""), orphans: c.fresh, orphansOnly: true}
			if err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
				batch := &pgx.Batch{}
				if err := queueChange(batch, topic, orphans); err != nil {
					return err
				}
				return sp.SendBatch(ctx, batch).Close()
			}); err != nil && !pgstore.IsDataError(err) {
				return fmt.Errorf("record the orphaned images of %s: %w", c.key, err)
			}
		}
		return nil
	})
	return refused, lost, err
}

// ownedOnly locks the parked records that changes finish and returns the
// changes whose job still owns its record, and the keys of those that do
// not. The lock holds until tx ends, so that no other instance resumes a
// record while its product's state is written.
func ownedOnly(ctx context.Context, tx pgx.Tx, topic string, changes []change) ([]change, []string, error) {
	var keys, owners []string
	var offsets []int64
	for _, c := range changes {
		if c.finishes != nil {
			keys = append(keys, c.key)
			offsets = append(offsets, c.finishes.Offset)
			owners = append(owners, c.owner)
		}
	}
	if len(keys) == 0 {
		return changes, nil, nil
	}
	rows, err := tx.Query(ctx, `SELECT p.record_key FROM collector_pending p
		JOIN unnest($2::text[], $3::bigint[], $4::text[]) AS w(record_key, source_offset, owner)
		  ON p.record_key = w.record_key AND p.source_offset = w.source_offset AND p.owner = w.owner
		WHERE p.topic = $1
		FOR UPDATE OF p`, topic, keys, offsets, owners)
	if err != nil {
		return nil, nil, fmt.Errorf("lock parked records: %w", err)
	}
	mine, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, nil, fmt.Errorf("lock parked records: %w", err)
	}
	owned := make(map[string]bool, len(mine))
	for _, k := range mine {
		owned[k] = true
	}
	var kept []change
	var lost []string
	for _, c := range changes {
		if c.finishes != nil && !owned[c.key] {
			lost = append(lost, c.key)
			continue
		}
		kept = append(kept, c)
	}
	return kept, lost, nil
}

// queueChange queues the statements of one change.
func queueChange(batch *pgx.Batch, topic string, c change) error {
	switch {
	case c.orphansOnly, c.park != nil:
	case c.remove:
		batch.Queue(`DELETE FROM collected_products WHERE record_key = $1`, c.key)
	case c.product != nil:
		p := c.product
		prod, err := json.Marshal(p.Product)
		if err != nil {
			return fmt.Errorf("encode product %s: %w", c.key, err)
		}
		imgs := p.Images
		if imgs == nil {
			imgs = []catalog.Image{}
		}
		ij, err := json.Marshal(imgs)
		if err != nil {
			return fmt.Errorf("encode images of %s: %w", c.key, err)
		}
		var collectedAt *time.Time
		if !p.CollectedAt.IsZero() {
			collectedAt = &p.CollectedAt
		}
		// A key reused by another identity (possible only with hand-made
		// records) replaces the old row.
		batch.Queue(`DELETE FROM collected_products WHERE record_key = $1 AND (mall_id, product_id) <> ($2, $3)`,
			c.key, p.Product.MallID, p.Product.ProductID)
		batch.Queue(`INSERT INTO collected_products
			(mall_id, product_id, record_key, status, reason, product, images, collected_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (mall_id, product_id) DO UPDATE SET
				record_key = EXCLUDED.record_key, status = EXCLUDED.status, reason = EXCLUDED.reason,
				product = EXCLUDED.product, images = EXCLUDED.images,
				collected_at = EXCLUDED.collected_at, updated_at = EXCLUDED.updated_at`,
			p.Product.MallID, p.Product.ProductID, c.key, string(p.Status), p.Reason, prod, ij, collectedAt, p.UpdatedAt)
	}
	if r := c.park; r != nil {
		batch.Queue(`INSERT INTO collector_pending (topic, record_key, source_partition, source_offset, value, record_time, owner)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (topic, record_key) DO UPDATE SET source_partition = EXCLUDED.source_partition,
				source_offset = EXCLUDED.source_offset, value = EXCLUDED.value, record_time = EXCLUDED.record_time, parked_at = now(),
				owner = EXCLUDED.owner, out_topic = NULL, out_partition = NULL, out_offset = NULL`,
			topic, c.key, r.Partition, r.Offset, r.Value, r.Timestamp, c.owner)
	}
	if c.unpark {
		batch.Queue(`DELETE FROM collector_pending WHERE topic = $1 AND record_key = $2`, topic, c.key)
	}
	if len(c.keep) > 0 {
		batch.Queue(`DELETE FROM collector_orphan_blobs WHERE blob_key = ANY($1)`, c.keep)
	}
	if len(c.orphans) > 0 {
		batch.Queue(`INSERT INTO collector_orphan_blobs (blob_key, record_key)
			SELECT unnest($1::text[]), $2 ON CONFLICT (blob_key) DO NOTHING`, c.orphans, c.key)
	}
	return nil
}

// parked is a record in collector_pending; out is where its job wrote its
// output's first record, in a transaction that may or may not have
// committed (nil: no job got that far).
type parked struct {
	rec *kgo.Record
	out *kgo.Record
}

// claim makes owner the owner of the parked records of topic's partitions,
// except those of the keys skip (they are collecting here), and returns
// them, oldest first. A job that parked or resumed one of them before can
// no longer finish it (apply and markEmitted refuse it).
func (s *Store) claim(ctx context.Context, topic string, partitions []int32, owner string, skip []string) ([]parked, error) {
	if skip == nil {
		skip = []string{} // NOT (k = ANY(NULL)) would hold for no row
	}
	rows, err := s.pool.Query(ctx, `WITH claimed AS (
			UPDATE collector_pending SET owner = $3
			WHERE topic = $1 AND source_partition = ANY($2) AND NOT (record_key = ANY($4))
			RETURNING record_key, source_partition, source_offset, value, record_time, parked_at, out_topic, out_partition, out_offset)
		SELECT record_key, source_partition, source_offset, value, record_time, out_topic, out_partition, out_offset
		FROM claimed ORDER BY parked_at`,
		topic, partitions, owner, skip)
	if err != nil {
		return nil, fmt.Errorf("claim parked records: %w", err)
	}
	defer rows.Close()
	var out []parked
	for rows.Next() {
		r := &kgo.Record{Topic: topic}
		var key string
		var outTopic *string
		var outPartition *int32
		var outOffset *int64
		if err := rows.Scan(&key, &r.Partition, &r.Offset, &r.Value, &r.Timestamp, &outTopic, &outPartition, &outOffset); err != nil {
			return nil, fmt.Errorf("claim parked records: %w", err)
		}
		r.Key = []byte(key)
		p := parked{rec: r}
		if outTopic != nil && outPartition != nil && outOffset != nil {
			p.out = &kgo.Record{Topic: *outTopic, Partition: *outPartition, Offset: *outOffset, Key: r.Key}
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claim parked records: %w", err)
	}
	return out, nil
}

// emission is where a parked record's job produced its output's first
// record, in the transaction it is about to commit.
type emission struct {
	from  *kgo.Record // the parked record
	owner string
	out   *kgo.Record // its Topic, Partition and Offset
}

// markEmitted writes each emission into its parked record while the job
// still owns it, in one transaction, and returns the keys it no longer
// owns: their output must not be committed.
func (s *Store) markEmitted(ctx context.Context, topic string, ems []emission) ([]string, error) {
	if len(ems) == 0 {
		return nil, nil
	}
	var lost []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		lost = lost[:0]
		batch := &pgx.Batch{}
		for _, e := range ems {
			batch.Queue(`UPDATE collector_pending SET out_topic = $5, out_partition = $6, out_offset = $7
				WHERE topic = $1 AND record_key = $2 AND source_offset = $3 AND owner = $4`,
				topic, string(e.from.Key), e.from.Offset, e.owner, e.out.Topic, e.out.Partition, e.out.Offset)
		}
		br := tx.SendBatch(ctx, batch)
		for _, e := range ems {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return err
			}
			if tag.RowsAffected() == 0 {
				lost = append(lost, string(e.from.Key))
			}
		}
		return br.Close()
	})
	if err != nil {
		return nil, fmt.Errorf("mark the output of %d parked records: %w", len(ems), err)
	}
	return lost, nil
}

// unpark forgets the parked records whose products were committed; a
// record of the key parked since (a newer offset) stays.
func (s *Store) unpark(ctx context.Context, topic string, recs []*kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	for _, r := range recs {
		batch.Queue(`DELETE FROM collector_pending WHERE topic = $1 AND record_key = $2 AND source_offset = $3`, topic, string(r.Key), r.Offset)
	}
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("forget %d parked records: %w", len(recs), err)
	}
	return nil
}

// forgetOrphans removes orphan records whose blobs are gone.
func (s *Store) forgetOrphans(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM collector_orphan_blobs WHERE blob_key = ANY($1)`, keys); err != nil {
		return fmt.Errorf("forget deleted orphan blobs: %w", err)
	}
	return nil
}

// Status returns the collector's state of one product, for tests and tools.
func (s *Store) Status(ctx context.Context, mallID, productID string) (*catalog.Product, error) {
	row := s.pool.QueryRow(ctx, `SELECT `+productColumns+` FROM collected_products WHERE mall_id = $1 AND product_id = $2`, mallID, productID)
	p, err := scanProduct(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state of %s: %w", records.ProductKey(mallID, productID), err)
	}
	return &p, nil
}
