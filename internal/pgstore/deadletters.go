package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SourceRecord names one record of a source topic.
type SourceRecord struct {
	Topic     string
	Partition int32
	Offset    int64
}

// OweDeadLetters records, committed before it returns, that group is about
// to send recs to its dead-letter topic, and returns those it had recorded
// before (an earlier attempt whose batch never committed may have sent
// them), each with the time from which to look for its letter.
func (s *Store) OweDeadLetters(ctx context.Context, group string, recs []SourceRecord, sentAfter time.Time) (map[SourceRecord]time.Time, error) {
	topics, parts, offs := columns(recs)
	earlier := map[SourceRecord]time.Time{}
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT d.topic, d.partition, d."offset", d.sent_after FROM sink_dead_letters d
			JOIN unnest($2::text[], $3::int[], $4::bigint[]) AS r(topic, partition, "offset")
			  ON d.topic = r.topic AND d.partition = r.partition AND d."offset" = r."offset"
			WHERE d.grp = $1`, group, topics, parts, offs)
		var r SourceRecord
		var at time.Time
		if _, err := pgx.ForEachRow(rows, []any{&r.Topic, &r.Partition, &r.Offset, &at}, func() error {
			earlier[r] = at
			return nil
		}); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO sink_dead_letters (grp, topic, partition, "offset", sent_after)
			SELECT $1, topic, partition, "offset", $5 FROM unnest($2::text[], $3::int[], $4::bigint[]) AS r(topic, partition, "offset")
			ON CONFLICT DO NOTHING`, group, topics, parts, offs, sentAfter)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("record %d dead letters to send: %w", len(recs), err)
	}
	return earlier, nil
}

// PaidDeadLetters forgets recs, whose letters were sent and whose batch
// committed.
func (s *Store) PaidDeadLetters(ctx context.Context, group string, recs []SourceRecord) error {
	topics, parts, offs := columns(recs)
	if _, err := s.Pool.Exec(ctx, `DELETE FROM sink_dead_letters d
		USING unnest($2::text[], $3::int[], $4::bigint[]) AS r(topic, partition, "offset")
		WHERE d.grp = $1 AND d.topic = r.topic AND d.partition = r.partition AND d."offset" = r."offset"`,
		group, topics, parts, offs); err != nil {
		return fmt.Errorf("forget %d sent dead letters: %w", len(recs), err)
	}
	return nil
}

func columns(recs []SourceRecord) (topics []string, parts []int32, offs []int64) {
	for _, r := range recs {
		topics, parts, offs = append(topics, r.Topic), append(parts, r.Partition), append(offs, r.Offset)
	}
	return topics, parts, offs
}
