package collector

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// A throwaway PostgreSQL cluster for this package's tests: started once on a
// free loopback port, each test gets its own database, removed at the end.
var testPG struct {
	once sync.Once
	dir  string
	bin  string
	port int
	err  error
	dbs  atomic.Int64
}

func pgBinDir() (string, error) {
	if d := os.Getenv("PG_BIN"); d != "" {
		return d, nil
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(m) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", fmt.Errorf("PostgreSQL's server programs are not installed: run `make postgres` (or set PG_BIN)")
	}
	return filepath.Dir(m[len(m)-1]), nil
}

// asPostgres runs a server program; initdb and postgres refuse to run as
// root, so as root they run as the postgres user.
func asPostgres(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

func startTestPG() {
	bin, err := pgBinDir()
	if err != nil {
		testPG.err = err
		return
	}
	dir, err := os.MkdirTemp("", "collector-pg-")
	if err != nil {
		testPG.err = err
		return
	}
	testPG.dir, testPG.bin = dir, bin
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "-R", "postgres:", dir).CombinedOutput(); err != nil {
			testPG.err = fmt.Errorf("chown %s: %v: %s", dir, err, out)
			return
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := asPostgres(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		testPG.err = fmt.Errorf("initdb: %v: %s", err, out)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		testPG.err = err
		return
	}
	testPG.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", testPG.port, dir)
	if out, err := asPostgres(filepath.Join(bin, "pg_ctl"), "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		testPG.err = fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
	}
}

func stopTestPG() {
	if testPG.dir == "" {
		return
	}
	_ = asPostgres(filepath.Join(testPG.bin, "pg_ctl"), "-D", filepath.Join(testPG.dir, "data"), "-m", "immediate", "stop").Run()
	os.RemoveAll(testPG.dir)
}

func TestMain(m *testing.M) {
	code := m.Run()
	stopTestPG()
	os.Exit(code)
}

// NewTestDatabase returns the DSN of a fresh, empty database.
func NewTestDatabase(t testing.TB) string {
	t.Helper()
	testPG.once.Do(startTestPG)
	if testPG.err != nil {
		t.Fatalf("start PostgreSQL for the tests: %v", testPG.err)
	}
	admin := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", testPG.port)
	name := "t" + strconv.Itoa(os.Getpid()) + "_" + strconv.FormatInt(testPG.dbs.Add(1), 10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to test PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	return strings.Replace(admin, "/postgres?", "/"+name+"?", 1)
}
