package pgcluster_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/pgcluster"
	"github.com/shopstream/shopstream/internal/pgstore"
	"github.com/shopstream/shopstream/internal/tlsgen"
)

// DATABASE_DSN with sslmode=verify-full against a real PostgreSQL with
// ssl=on and a certificate from a generated CA: the store the sink and the
// collector use opens it; a DSN that trusts another CA, or names a host the
// certificate does not, is refused, saying why.
func TestDatabaseDSNVerifyFull(t *testing.T) {
	ca, err := tlsgen.NewCA("postgres test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Server([]string{"127.0.0.1"}, time.Hour) // not "localhost"
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{Fast: true, TLS: &pgcluster.TLS{CertPEM: pair.CertPEM, KeyPEM: pair.KeyPEM}})
	if err != nil {
		if os.Getenv("CI") != "true" && errors.Is(err, pgcluster.ErrNotInstalled) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	other, err := tlsgen.NewCA("someone else", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherFile := filepath.Join(dir, "other.crt")
	if err := os.WriteFile(otherFile, other.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}

	store, _, err := pgstore.Open(ctx, c.DSNVerifyFull("shopstream", "127.0.0.1", caFile))
	if err != nil {
		t.Fatalf("verify-full with the server's CA: %v", err)
	}
	var ssl bool
	if err := store.Pool.QueryRow(ctx, "select ssl from pg_stat_ssl where pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Errorf("the connection is not encrypted (ssl %v, %v)", ssl, err)
	}
	store.Close()

	for _, c := range []struct{ dsn, want string }{
		{c.DSNVerifyFull("shopstream", "127.0.0.1", otherFile), "certificate signed by unknown authority"},
		{c.DSNVerifyFull("shopstream", "localhost", caFile), "localhost"},
	} {
		_, _, err := pgstore.Open(ctx, c.dsn)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error saying %q", c.dsn, err, c.want)
		}
	}
}
