package pgcluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// startOrSkip starts a cluster; with CI=true a failure fails the test.
func startOrSkip(t *testing.T, o Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := Start(ctx, o)
	if err != nil {
		if os.Getenv("CI") == "true" || !errors.Is(err, ErrNotInstalled) {
			t.Fatalf("start PostgreSQL: %v", err)
		}
		t.Skipf("start PostgreSQL: %v", err)
	}
	return c
}

// sql runs statement on dsn and returns the first column of its first row
// as text ("" when the statement returns no row).
func sql(t *testing.T, dsn, statement string, args ...any) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, statement, args...)
	if err != nil {
		t.Fatalf("%s: %v", statement, err)
	}
	defer rows.Close()
	var s string
	if rows.Next() {
		if err := rows.Scan(&s); err != nil {
			t.Fatalf("%s: %v", statement, err)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", statement, err)
	}
	return s
}

func TestTemporaryClusterStartsAndIsRemoved(t *testing.T) {
	c := startOrSkip(t, Options{Fast: true})
	if got := sql(t, c.DSN, "SELECT current_database()"); got != "shopstream" {
		t.Errorf("connected to database %q, want shopstream", got)
	}
	if got := sql(t, c.DSN, "SHOW fsync"); got != "off" {
		t.Errorf("fsync = %s in a Fast cluster, want off", got)
	}
	dir := c.Dir
	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary cluster %s still exists after Stop (stat: %v)", dir, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, c.DSN); err == nil {
		conn.Close(ctx)
		t.Errorf("the server still accepts connections after Stop")
	}
}

// A cluster in a directory keeps its data, its password and (when free) its
// port across restarts, as `shopstream dev` relies on.
func TestPersistentClusterKeepsDataAcrossRestarts(t *testing.T) {
	root := t.TempDir()
	if os.Geteuid() == 0 {
		// t.TempDir's parents are private to root; the postgres user could
		// not enter them.
		var err error
		if root, err = os.MkdirTemp("", "pgcluster-test-"); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(root, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(root) })
	}
	dir := filepath.Join(root, "pg")
	c := startOrSkip(t, Options{Dir: dir})
	if !c.Initialized {
		t.Errorf("first start did not report initdb")
	}
	sql(t, c.DSN, "CREATE TABLE kept AS SELECT 'hello'::text AS v")
	port, dsn := c.Port, c.DSN
	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	c2 := startOrSkip(t, Options{Dir: dir, Port: port})
	defer c2.Stop()
	if c2.Initialized {
		t.Errorf("second start ran initdb again")
	}
	if c2.DSN != dsn {
		t.Errorf("DSN changed across restarts: %q then %q", dsn, c2.DSN)
	}
	if got := sql(t, c2.DSN, "SELECT v FROM kept"); got != "hello" {
		t.Errorf("after a restart the table holds %q, want hello", got)
	}
	if st, err := os.Stat(filepath.Join(dir, "password")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("password file: %v, mode %v; want it private (0600)", err, st.Mode().Perm())
	}
}

func TestTakenPortNamesTheFix(t *testing.T) {
	c := startOrSkip(t, Options{Fast: true})
	defer c.Stop()
	_, err := Start(context.Background(), Options{Fast: true, Port: c.Port})
	if err == nil || !contains(err.Error(), "is taken") || !contains(err.Error(), "DATABASE_DSN") {
		t.Fatalf("starting on a taken port: err = %v, want one that says the port is taken and names DATABASE_DSN", err)
	}
}

func TestMissingProgramsSayHowToInstall(t *testing.T) {
	_, err := FindBinDir(t.TempDir())
	if !errors.Is(err, ErrNotInstalled) || !contains(err.Error(), "apt-get install postgresql") {
		t.Fatalf("FindBinDir(empty dir) = %v, want ErrNotInstalled with the install hint", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
