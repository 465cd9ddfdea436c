// Package pgtest gives each test a PostgreSQL database of its own on a real
// server: $TEST_DATABASE_DSN's server when set, else one throwaway cluster
// per test binary (package pgcluster), started on first use and stopped by
// Main. Where no server can be had the test is skipped, except under CI=true,
// where it fails: CI installs PostgreSQL (`make test` runs
// scripts/ensure-postgres.sh), so a missing server there is a bug.
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopstream/shopstream/internal/pgcluster"
)

var (
	once    sync.Once
	shared  *pgcluster.Cluster
	baseDSN string
	initErr error
	seq     atomic.Int64
)

// Main runs a package's tests and then stops the shared cluster.
func Main(m *testing.M) {
	code := m.Run()
	if shared != nil {
		_ = shared.Stop()
	}
	os.Exit(code)
}

// Unavailable ends a test that cannot get a server: Fatal under CI=true, Skip
// otherwise.
func Unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("PostgreSQL is needed and CI=true, so this fails instead of skipping: %v", err)
	}
	t.Skipf("no PostgreSQL (%v); set TEST_DATABASE_DSN or install PostgreSQL's server programs", err)
}

// server returns a DSN of the server that test databases are created on.
func server() (string, error) {
	once.Do(func() {
		if dsn := os.Getenv("TEST_DATABASE_DSN"); dsn != "" {
			baseDSN = dsn
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		shared, initErr = pgcluster.Start(ctx, pgcluster.Options{Fast: true, Database: "postgres"})
		if initErr == nil {
			baseDSN = shared.DSN
		}
	})
	return baseDSN, initErr
}

// DB returns the DSN of a new, empty database that is dropped when the test
// ends.
func DB(t testing.TB) string {
	t.Helper()
	base, err := server()
	if err != nil {
		Unavailable(t, err)
	}
	name := fmt.Sprintf("t_%d_%d_%s", os.Getpid(), seq.Add(1), sanitize(t.Name()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		Unavailable(t, fmt.Errorf("connect to %s: %w", redact(base), err))
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	return withDatabase(base, name)
}

// Cluster starts a throwaway cluster that belongs to the test alone (for
// tests that stop and restart the server), stopped when the test ends.
func Cluster(t testing.TB) *pgcluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{Fast: true})
	if err != nil {
		Unavailable(t, err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

// withDatabase returns dsn with its database replaced.
func withDatabase(dsn, name string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name // key=value form: the last dbname wins
}

func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 30 {
			break
		}
	}
	return b.String()
}

func redact(dsn string) string {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "the test server"
	}
	return fmt.Sprintf("%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}
