package pgstore

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Each Table says what the migrations create: its key column first and the
// primary key, its tombstone column among its columns, and every column of
// the migrated table with the declared type, besides the three the sink
// fills itself. A Table out of step with the SQL would stage the wrong
// columns or delete by the wrong one.
func TestTablesMatchTheMigrations(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	for _, tbl := range Tables {
		if tbl.Columns[0].Name != tbl.Key {
			t.Errorf("%s: the first column is %s, want the key %s", tbl.Name, tbl.Columns[0].Name, tbl.Key)
		}
		if tbl.tombIdx < 0 || tbl.Columns[tbl.tombIdx].Name != tbl.TombstoneBy {
			t.Errorf("%s: tombstones delete by %s, which is not one of its columns", tbl.Name, tbl.TombstoneBy)
		}

		rows, _ := s.Pool.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
			WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, tbl.Name)
		migrated, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Column])
		if err != nil {
			t.Fatalf("read the columns of %s: %v", tbl.Name, err)
		}
		var names []string
		for _, c := range migrated {
			names = append(names, c.Name)
		}
		for _, c := range tbl.Columns {
			i := slices.Index(names, c.Name)
			if i < 0 {
				t.Errorf("%s.%s is not in the migrated table (%v)", tbl.Name, c.Name, names)
				continue
			}
			var declared string
			if err := s.Pool.QueryRow(ctx, `SELECT format_type($1::regtype, NULL)`, c.Type).Scan(&declared); err != nil {
				t.Errorf("%s.%s: type %q: %v", tbl.Name, c.Name, c.Type, err)
				continue
			}
			if migrated[i].Type != declared {
				t.Errorf("%s.%s is %s in the migration but %s (%s) in Table", tbl.Name, c.Name, migrated[i].Type, c.Type, declared)
			}
		}
		for _, n := range names {
			own := n == "source_partition" || n == "source_offset" || n == "synced_at"
			if !own && !slices.ContainsFunc(tbl.Columns, func(c Column) bool { return c.Name == n }) {
				t.Errorf("%s.%s is in the migrated table but not in Table: the sink would never fill it", tbl.Name, n)
			}
		}

		var pk []string
		rows, _ = s.Pool.Query(ctx, `SELECT a.attname FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
			WHERE i.indrelid = $1::regclass AND i.indisprimary`, tbl.Name)
		if pk, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			t.Fatalf("read the primary key of %s: %v", tbl.Name, err)
		}
		if !slices.Equal(pk, []string{tbl.Key}) {
			t.Errorf("%s: primary key %v, want (%s)", tbl.Name, pk, tbl.Key)
		}
	}
}
