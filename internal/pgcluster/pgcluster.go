// Package pgcluster starts and stops a local PostgreSQL cluster from the
// server programs installed on this machine (Debian's postgresql package puts
// them in /usr/lib/postgresql/<version>/bin and starts nothing by itself).
// `shopstream dev` keeps one under ./.data/pg; tests start throwaway ones.
//
// initdb and postgres refuse to run as root, so when this process is root
// they run as the `postgres` user, which then owns the data directory.
package pgcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotInstalled says that initdb and postgres were not found.
var ErrNotInstalled = errors.New("PostgreSQL's server programs (initdb, postgres) are not installed")

// InstallHint tells a user how to get the server programs.
const InstallHint = "install PostgreSQL's server programs with `sudo apt-get install postgresql` (or `make postgres`), or set DATABASE_DSN to a running server"

// Options says where the cluster lives and how it runs.
type Options struct {
	// Dir holds the cluster's state: Dir/data is the data directory and
	// Dir/password the superuser's password. An existing cluster there is
	// started as it is. Empty: a temporary directory that Stop removes.
	Dir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// BinDir holds initdb and postgres; empty finds them (see FindBinDir).
	BinDir string
	// Database is created when missing; empty means "shopstream".
	Database string
	// Fast turns off fsync and full-page writes: for tests and benchmarks,
	// whose clusters need not survive a machine crash.
	Fast bool
	// Log receives the server's log; nil keeps it in Dir/postgres.log (or
	// in memory for a temporary cluster), to quote when start-up fails.
	Log io.Writer
	// ReadyTimeout bounds the wait for the server to accept connections.
	ReadyTimeout time.Duration
	// TLS, when set, turns ssl on with this PEM certificate and key, so
	// clients can connect with sslmode=verify-full; DSN still says
	// sslmode=disable, and DSNVerifyFull gives the verifying one.
	TLS *TLS
}

// TLS is a server certificate and its key, PEM.
type TLS struct {
	CertPEM, KeyPEM []byte
}

// Cluster is a running server.
type Cluster struct {
	// DSN connects to Database as the superuser over TCP on 127.0.0.1.
	DSN  string
	Port int
	// Dir is the cluster's state directory (Options.Dir or the temporary one).
	Dir string
	// Initialized says whether Start created the cluster (initdb ran).
	Initialized bool

	password string
	temp     bool
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	logTail  *tailBuffer
	stopOnce sync.Once
	stopErr  error
}

// FindBinDir returns the directory that holds initdb and postgres: explicit
// if given, else $PG_BIN_DIR, else the newest /usr/lib/postgresql/*/bin, else
// the directory of initdb on $PATH.
func FindBinDir(explicit string) (string, error) {
	if explicit == "" {
		explicit = os.Getenv("PG_BIN_DIR")
	}
	if explicit != "" {
		if !hasServer(explicit) {
			return "", fmt.Errorf("%w in %s: %s", ErrNotInstalled, explicit, InstallHint)
		}
		return explicit, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if hasServer(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if d := filepath.Dir(p); hasServer(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w (looked in $PG_BIN_DIR, /usr/lib/postgresql/*/bin and $PATH): %s", ErrNotInstalled, InstallHint)
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func hasServer(dir string) bool {
	for _, p := range []string{"initdb", "postgres"} {
		st, err := os.Stat(filepath.Join(dir, p))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// Start initialises the cluster when Dir holds none, starts the server as a
// child process and waits until Database accepts connections. On an error
// nothing is left running.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Database == "" {
		o.Database = "shopstream"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	bin, err := FindBinDir(o.BinDir)
	if err != nil {
		return nil, err
	}
	owner, err := serverUser()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: o.Dir, logTail: &tailBuffer{max: 8 << 10}}
	if err := c.start(ctx, o, bin, owner); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, o Options, bin string, owner *syscall.Credential) (err error) {
	// The port first: a taken one fails before anything is created.
	if c.Port, err = freePort(o.Port); err != nil {
		return err
	}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "shopstream-pg-"); err != nil {
			return fmt.Errorf("create a temporary directory for PostgreSQL: %w", err)
		}
		c.temp = true
		// The server's user must be able to enter it.
		if err := os.Chmod(c.Dir, 0o755); err != nil {
			return fmt.Errorf("make %s reachable for PostgreSQL: %w", c.Dir, err)
		}
	}
	if c.Dir, err = filepath.Abs(c.Dir); err != nil {
		return err
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Errorf("create PostgreSQL state directory %s: %w", c.Dir, err)
	}
	data := filepath.Join(c.Dir, "data")
	if _, statErr := os.Stat(filepath.Join(data, "PG_VERSION")); errors.Is(statErr, fs.ErrNotExist) {
		if err := c.initdb(ctx, bin, data, owner, o.Fast); err != nil {
			return err
		}
		c.Initialized = true
	} else if statErr != nil {
		return fmt.Errorf("inspect PostgreSQL data directory %s: %w", data, statErr)
	}
	pw, err := os.ReadFile(filepath.Join(c.Dir, "password"))
	if err != nil {
		return fmt.Errorf("read the cluster's password from %s: %w (delete %s to start afresh)", filepath.Join(c.Dir, "password"), err, c.Dir)
	}
	c.password = strings.TrimSpace(string(pw))

	var log io.Writer = c.logTail
	switch {
	case o.Log != nil:
		log = io.MultiWriter(o.Log, c.logTail)
	case !c.temp:
		f, err := os.OpenFile(filepath.Join(c.Dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("open PostgreSQL's log: %w", err)
		}
		defer f.Close() // the child holds its own descriptor
		log = io.MultiWriter(f, c.logTail)
	}
	args := []string{"-D", data, "-p", strconv.Itoa(c.Port),
		"-c", "listen_addresses=127.0.0.1",
		// No Unix socket: the distribution's socket directory may not exist
		// or may belong to another cluster.
		"-c", "unix_socket_directories=",
		"-c", "max_connections=200",
	}
	if o.Fast {
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off")
	}
	if o.TLS != nil {
		tlsArgs, err := c.writeTLS(o.TLS, owner)
		if err != nil {
			return err
		}
		args = append(args, tlsArgs...)
	}
	c.cmd = exec.Command(filepath.Join(bin, "postgres"), args...)
	c.cmd.Stdout, c.cmd.Stderr = log, log
	c.cmd.Dir = c.Dir
	c.cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so a Ctrl-C reaches us first and we stop it
		// in order; SIGQUIT (immediate shutdown) if we die without doing so.
		Setpgid:    true,
		Pdeathsig:  syscall.SIGQUIT,
		Credential: owner,
	}
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("start PostgreSQL (%s): %w", c.cmd.Path, err)
	}
	c.done = make(chan struct{})
	go func() { c.waitErr = c.cmd.Wait(); close(c.done) }()

	c.DSN = c.dsn(o.Database)
	rctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	if err := c.waitReady(rctx); err != nil {
		return err
	}
	return c.createDatabase(rctx, o.Database)
}

func (c *Cluster) initdb(ctx context.Context, bin, data string, owner *syscall.Credential, fast bool) error {
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("create PostgreSQL data directory %s: %w", data, err)
	}
	pw := make([]byte, 16)
	if _, err := rand.Read(pw); err != nil {
		return err
	}
	password := hex.EncodeToString(pw)
	pwFile := filepath.Join(c.Dir, ".initdb-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		return fmt.Errorf("write initdb's password file: %w", err)
	}
	defer os.Remove(pwFile)
	if owner != nil {
		for _, p := range []string{data, pwFile} {
			if err := os.Chown(p, int(owner.Uid), int(owner.Gid)); err != nil {
				return fmt.Errorf("give %s to the postgres user: %w", p, err)
			}
		}
		if err := reachable(data, owner); err != nil {
			return err
		}
	}
	args := []string{"-D", data, "-U", "postgres", "--pwfile", pwFile,
		"--auth-host=scram-sha-256", "--auth-local=trust",
		"--encoding=UTF8", "--locale=C", "--no-instructions"}
	if fast {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: owner}
	cmd.Dir = c.Dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", data, err, strings.TrimSpace(out.String()))
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "password"), []byte(password+"\n"), 0o600); err != nil {
		return fmt.Errorf("save the cluster's password: %w", err)
	}
	return nil
}

// reachable checks that the server's user can enter every directory above
// data, which initdb would otherwise report as a bare "permission denied".
func reachable(data string, owner *syscall.Credential) error {
	for d := filepath.Dir(data); d != "/" && d != "."; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		mode := st.Mode().Perm()
		if !ok {
			continue
		}
		switch {
		case sys.Uid == owner.Uid && mode&0o100 != 0:
		case sys.Gid == owner.Gid && mode&0o010 != 0:
		case mode&0o001 != 0:
		default:
			return fmt.Errorf("the postgres user cannot enter %s (mode %v): PostgreSQL's data directory must be below directories it can traverse; choose another --data-dir or `chmod o+x %s`", d, mode, d)
		}
	}
	return nil
}

// serverUser returns the credential to run initdb and postgres with: nil when
// this process is not root, else the postgres user's.
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root and there is no `postgres` user to run it as (%v): install the postgresql package, which creates it, or run as another user", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user postgres has a non-numeric uid %q or gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (c *Cluster) dsn(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", c.password),
		Host: "127.0.0.1:" + strconv.Itoa(c.Port), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// writeTLS writes the server's certificate and key where the server's user
// can read them (PostgreSQL refuses a key that others may read) and
// returns the settings that turn ssl on.
func (c *Cluster) writeTLS(t *TLS, owner *syscall.Credential) ([]string, error) {
	dir := filepath.Join(c.Dir, "tls")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	cert, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(cert, t.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write PostgreSQL's certificate: %w", err)
	}
	if err := os.WriteFile(key, t.KeyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write PostgreSQL's key: %w", err)
	}
	if owner != nil {
		if err := os.Chown(key, int(owner.Uid), int(owner.Gid)); err != nil {
			return nil, fmt.Errorf("give PostgreSQL's key to the postgres user: %w", err)
		}
	}
	return []string{"-c", "ssl=on", "-c", "ssl_cert_file=" + cert, "-c", "ssl_key_file=" + key}, nil
}

// DSNVerifyFull is the DSN of db with sslmode=verify-full against the CA
// in caFile, as a production DATABASE_DSN would say.
func (c *Cluster) DSNVerifyFull(db, host, caFile string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", c.password),
		Host: host + ":" + strconv.Itoa(c.Port), Path: "/" + db,
		RawQuery: url.Values{"sslmode": {"verify-full"}, "sslrootcert": {caFile}}.Encode()}
	return u.String()
}

// DSNFor returns the DSN of another database on this cluster.
func (c *Cluster) DSNFor(db string) string { return c.dsn(db) }

func (c *Cluster) waitReady(ctx context.Context) error {
	for {
		select {
		case <-c.done:
			return fmt.Errorf("PostgreSQL exited during start-up (%v); its log ends with:\n%s", c.waitErr, c.logTail.String())
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(pctx, c.dsn("postgres"))
		cancel()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("PostgreSQL on 127.0.0.1:%d did not accept connections (%v); its log ends with:\n%s", c.Port, err, c.logTail.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) createDatabase(ctx context.Context, db string) error {
	conn, err := pgx.Connect(ctx, c.dsn("postgres"))
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL on 127.0.0.1:%d: %w", c.Port, err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", db, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	return nil
}

// Stop shuts the server down (fast shutdown: sessions are disconnected and
// their transactions rolled back) within about ten seconds, and removes a
// temporary cluster's directory.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		if c.cmd != nil && c.cmd.Process != nil {
			c.stopErr = c.signalAndWait()
		}
		if c.temp && c.Dir != "" {
			if err := os.RemoveAll(c.Dir); err != nil && c.stopErr == nil {
				c.stopErr = fmt.Errorf("remove the temporary cluster %s: %w", c.Dir, err)
			}
		}
	})
	return c.stopErr
}

func (c *Cluster) signalAndWait() error {
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, 8 * time.Second}, {syscall.SIGQUIT, 2 * time.Second}, {syscall.SIGKILL, 5 * time.Second}} {
		_ = c.cmd.Process.Signal(step.sig)
		select {
		case <-c.done:
			if step.sig != syscall.SIGINT {
				return fmt.Errorf("PostgreSQL did not stop on SIGINT and was sent %v", step.sig)
			}
			return nil
		case <-time.After(step.wait):
		}
	}
	return errors.New("PostgreSQL did not stop even on SIGKILL")
}

// Exited is closed when the server process has ended.
func (c *Cluster) Exited() <-chan struct{} { return c.done }

// freePort returns port when it is free, or a free port when port is 0.
func freePort(port int) (int, error) {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("port %s for PostgreSQL is taken (%v): stop what listens there, or set DATABASE_DSN to use that server", addr, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
