package collector

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// CrashAfterParkedCommit makes a collector built with o call crash after a
// batch committed parked products' output to Kafka and before it deletes
// their parked records; an error from crash ends Run there, as a SIGKILL
// would (the fault suite's seed 19).
func CrashAfterParkedCommit(o *Options, crash func() error) { o.hooks.afterCommit = crash }

// CrashBeforeParkedCommit is the same after the output is marked in
// PostgreSQL and before the Kafka commit (the transaction aborts).
func CrashBeforeParkedCommit(o *Options, crash func() error) { o.hooks.afterMark = crash }

// ParkedKeys lists the record keys parked in s.
func ParkedKeys(t testing.TB, s *Store) []string {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT record_key FROM collector_pending ORDER BY record_key`)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// ParkedOwners maps each parked record key to the instance part of its
// owner's token (the token without its last "/sequence").
func ParkedOwners(t testing.TB, s *Store) map[string]string {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT record_key, owner FROM collector_pending`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var key, owner string
		if err := rows.Scan(&key, &owner); err != nil {
			t.Fatal(err)
		}
		if i := strings.LastIndexByte(owner, '/'); i > 0 {
			owner = owner[:i]
		}
		out[key] = owner
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
