package devstack

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/pgcluster"
)

// devPostgresPort is where `shopstream dev` first tries to run its
// PostgreSQL: beside a system server on 5432, not on it.
const devPostgresPort = 5433

// devPostgres is the dev stack's PostgreSQL: the server DATABASE_DSN names,
// or a cluster kept under <data-dir>/pg when PostgreSQL's server programs are
// installed, or none (then the sink does not run).
type devPostgres struct {
	cluster *pgcluster.Cluster
	took    time.Duration
}

// startPostgres sets cfg.DatabaseDSN to the dev stack's database when it
// starts one, and says once, clearly, when it cannot.
func startPostgres(ctx context.Context, cfg *config.Config, out io.Writer) (*devPostgres, error) {
	if cfg.DatabaseDSN != "" {
		return &devPostgres{}, nil
	}
	if _, err := pgcluster.FindBinDir(""); err != nil {
		fmt.Fprintf(out, "shopstream dev: PostgreSQL is not installed, so the sink does not run and no table is written. "+
			"To enable it: %s.\n", pgcluster.InstallHint)
		return &devPostgres{}, nil
	}
	t0 := time.Now()
	dir := filepath.Join(cfg.DataDir, "pg")
	c, err := pgcluster.Start(ctx, pgcluster.Options{Dir: dir, Port: devPort(dir)})
	if err != nil {
		return nil, fmt.Errorf("start the dev stack's PostgreSQL in %s: %w", dir, err)
	}
	// Later runs reuse the port, so the DSN stays the same; `shopstream
	// sink` and psql find it in the dsn file.
	_ = os.WriteFile(filepath.Join(dir, "port"), []byte(strconv.Itoa(c.Port)+"\n"), 0o644)
	if err := os.WriteFile(filepath.Join(dir, "dsn"), []byte(c.DSN+"\n"), 0o600); err != nil {
		c.Stop()
		return nil, fmt.Errorf("save the dev database's DSN: %w", err)
	}
	cfg.DatabaseDSN = c.DSN
	return &devPostgres{cluster: c, took: time.Since(t0)}, nil
}

// devPort is the port of the last run, else 5433, else any free one.
func devPort(dir string) int {
	want := devPostgresPort
	if b, err := os.ReadFile(filepath.Join(dir, "port")); err == nil {
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p > 0 {
			want = p
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(want))
	if err != nil {
		return 0
	}
	ln.Close()
	return want
}

// note describes the database for dev's ready table.
func (p *devPostgres) note(cfg *config.Config) (addr, note string) {
	if cfg.DatabaseDSN == "" {
		return "not running", "(PostgreSQL not installed: the sink is off)"
	}
	if p.cluster == nil {
		return config.Mask(cfg.DatabaseDSN), "(external)"
	}
	return config.Mask(cfg.DatabaseDSN), fmt.Sprintf("(embedded, up in %s, state in %s; psql \"$(cat %s)\")",
		p.took.Round(time.Millisecond), p.cluster.Dir, filepath.Join(cfg.DataDir, "pg", "dsn"))
}

func (p *devPostgres) stop() error {
	if p.cluster == nil {
		return nil
	}
	return p.cluster.Stop()
}
