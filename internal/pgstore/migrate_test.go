package pgstore

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopstream/shopstream/internal/pgcluster/pgtest"
)

// The collector's tables are a migration of the one migrator, after the
// sink's, and a fresh database gets both.
func TestOneMigratorCreatesTheSinksAndTheCollectorsTables(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, fmt.Sprintf("%04d_%s", m.Version, m.Name))
	}
	if want := []string{"0001_tables", "0002_collected_products", "0003_collector_pending", "0004_collector_pending_owner", "0005_products_fillfactor", "0006_sink_dead_letters"}; !slices.Equal(got, want) {
		t.Fatalf("migrations %v, want %v", got, want)
	}
	s, applied, err := Open(context.Background(), pgtest.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !slices.Equal(applied, []int{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("a fresh database applied %v, want [1 2 3 4 5 6]", applied)
	}
	for _, table := range []string{"sink_offsets", "collected_products", "collector_orphan_blobs", "collector_pending"} {
		if _, err := s.Pool.Exec(context.Background(), "SELECT FROM "+table); err != nil {
			t.Errorf("%s: %v", table, err)
		}
	}
}

// Before the collector's tables were a pgstore migration, the collector and
// the product API ran the SQL they embedded at every start in a transaction
// under their own advisory lock, and recorded nothing; the sink's migrator
// recorded version 1 in schema_migrations. A database left by either or both
// opens without an error, keeps its rows, records both versions and ends with
// the same tables as a fresh one.
func TestUpgradeFromTheCollectorsOwnMigrator(t *testing.T) {
	ctx := context.Background()
	oldCollectorSQL := oldCollectorMigration(t)
	fresh, _, err := Open(ctx, pgtest.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	want := collectorSchema(t, fresh.Pool)

	for i, c := range []struct {
		name        string
		oldSink     bool
		wantApplied []int
	}{
		{"collector and api only", false, []int{1, 2, 3, 4, 5, 6}},
		{"sink, collector and api", true, []int{2, 3, 4, 5, 6}},
	} {
		dsn := pgtest.DB(t)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if c.oldSink {
			ms, err := Migrations()
			if err != nil {
				t.Fatal(err)
			}
			// What the sink's migrator did when 0001 was its only migration.
			if _, err := conn.Exec(ctx, `CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
				applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, ms[0].SQL); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES (1, 'tables')`); err != nil {
				t.Fatal(err)
			}
		}
		// The old collector's Migrate, twice, as a collector and an API
		// starting one after the other did.
		for range 2 {
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('shopstream collector migrations'))`); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, oldCollectorSQL)
				return err
			})
			if err != nil {
				t.Fatalf("#%d %s: old collector migration: %v", i, c.name, err)
			}
		}
		if _, err := conn.Exec(ctx, `INSERT INTO collected_products (mall_id, product_id, record_key, status, product, updated_at)
			VALUES ('m1', 'p1', 'm1/p1', 'complete', '{"name":"mug"}', now());
			INSERT INTO collector_orphan_blobs (blob_key, record_key) VALUES ('m1/p1/old.png', 'm1/p1')`); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)

		s, applied, err := Open(ctx, dsn)
		if err != nil {
			t.Fatalf("#%d %s: open the old database: %v", i, c.name, err)
		}
		if !slices.Equal(applied, c.wantApplied) {
			t.Errorf("#%d %s: applied %v, want %v", i, c.name, applied, c.wantApplied)
		}
		rows, _ := s.Pool.Query(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
		if recorded, err := pgx.CollectRows(rows, pgx.RowTo[int]); err != nil || !slices.Equal(recorded, []int{1, 2, 3, 4, 5, 6}) {
			t.Errorf("#%d %s: schema_migrations holds %v (%v), want [1 2 3 4 5 6]", i, c.name, recorded, err)
		}
		var name string
		var orphans int
		if err := s.Pool.QueryRow(ctx, `SELECT product->>'name', (SELECT count(*) FROM collector_orphan_blobs)
			FROM collected_products WHERE record_key = 'm1/p1'`).Scan(&name, &orphans); err != nil || name != "mug" || orphans != 1 {
			t.Errorf("#%d %s: the collector's rows after the upgrade: name %q, %d orphans, %v", i, c.name, name, orphans, err)
		}
		if got := collectorSchema(t, s.Pool); got != want {
			t.Errorf("#%d %s: upgraded collector tables differ from fresh ones:\n%s\nwant\n%s", i, c.name, got, want)
		}
		if again, err := Migrate(ctx, s.Pool); err != nil || len(again) != 0 {
			t.Errorf("#%d %s: a second open applied %v (%v), want nothing", i, c.name, again, err)
		}
		s.Close()
	}
}

// collectorSchema describes the collector's tables: columns, constraints
// and indexes.
func collectorSchema(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	rows, _ := pool.Query(context.Background(), `
		SELECT format('%s.%s %s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
			CASE WHEN a.attnotnull THEN 'not null' ELSE 'null' END, coalesce(pg_get_expr(d.adbin, d.adrelid), ''))
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE c.relname IN ('collected_products', 'collector_orphan_blobs') AND a.attnum > 0 AND NOT a.attisdropped
		UNION ALL
		SELECT format('%s %s', conrelid::regclass, pg_get_constraintdef(oid)) FROM pg_constraint
		WHERE conrelid IN ('collected_products'::regclass, 'collector_orphan_blobs'::regclass)
		UNION ALL
		SELECT indexdef FROM pg_indexes WHERE tablename IN ('collected_products', 'collector_orphan_blobs')
		ORDER BY 1`)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("describe the collector's tables: %v", err)
	}
	return strings.Join(lines, "\n")
}

// Every command migrates on open, `shopstream status` too; a role that may
// only read opens an up-to-date database, and is told what failed when a
// migration is pending.
func TestOpenUpToDateDatabaseAsAReadOnlyRole(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	owner, _, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close) // after the role is dropped through it
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Skipf("the test server's DSN is not a URL, so no other role can be put in it")
	}
	role := "reader_" + strings.TrimPrefix(u.Path, "/")
	if _, err := owner.Pool.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'reader';
		GRANT SELECT ON ALL TABLES IN SCHEMA public TO %[1]s`, pgx.Identifier{role}.Sanitize())); err != nil {
		t.Skipf("cannot create a role on the test server: %v", err)
	}
	t.Cleanup(func() {
		_, err := owner.Pool.Exec(ctx, fmt.Sprintf(`DROP OWNED BY %s; DROP ROLE %[1]s`, pgx.Identifier{role}.Sanitize()))
		if err != nil {
			t.Logf("drop role %s: %v", role, err)
		}
	})
	u.User = url.UserPassword(role, "reader")

	reader, applied, err := Open(ctx, u.String())
	if err != nil {
		t.Fatalf("open an up-to-date database as a read-only role: %v", err)
	}
	var n int
	err = reader.Pool.QueryRow(ctx, `SELECT count(*) FROM products`).Scan(&n)
	reader.Close()
	if err != nil || len(applied) != 0 {
		t.Fatalf("as a read-only role: applied %v, count products: %v", applied, err)
	}

	if _, err := owner.Pool.Exec(ctx, `DELETE FROM schema_migrations WHERE version = 2`); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(ctx, u.String()); err == nil || !strings.Contains(err.Error(), "apply migration 0002_collected_products") {
		t.Fatalf("a pending migration under a read-only role: %v, want an error naming the migration", err)
	}
}

// oldCollectorMigration is the SQL the collector embedded before its tables
// joined pgstore's migrations. Migration 0002 was made from it by adding the
// statement that takes the old lock and nothing else, and a released
// migration never changes, so removing that statement gives the old file
// back (checked: the result still creates both tables and takes no lock).
func oldCollectorMigration(t *testing.T) string {
	t.Helper()
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	const lock = "SELECT pg_advisory_xact_lock(hashtext('shopstream collector migrations'));\n"
	m := ms[1]
	if m.Version != 2 || !strings.Contains(m.SQL, lock) {
		t.Fatalf("migration %d_%s: want 0002_collected_products taking the old collector's lock", m.Version, m.Name)
	}
	old := strings.Replace(m.SQL, lock, "", 1)
	for _, table := range []string{"CREATE TABLE IF NOT EXISTS collected_products", "CREATE TABLE IF NOT EXISTS collector_orphan_blobs"} {
		if !strings.Contains(old, table) {
			t.Fatalf("the old collector's SQL lacks %q", table)
		}
	}
	if strings.Contains(old, "pg_advisory") {
		t.Fatal("the old collector's SQL still takes a lock")
	}
	return old
}
