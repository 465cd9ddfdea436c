package environment

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/clients/temporalclient"
)

// TemporalCLIVersion is the Temporal CLI the Makefile builds; later tags carry
// replace directives and refuse `go install`.
const TemporalCLIVersion = "v1.5.1"

// TemporalDynamicConfig is the dev server's tuning. The transfer queue's poll
// rate limit makes a signal wait ~45 ms before its workflow task is
// dispatched; raising it brings the hand-off to a few milliseconds, which the
// filter's change latency depends on. One task queue partition instead of
// four stops a task from waiting up to seconds on a partition no poller is
// on, and eager activities start in the workflow task's reply: with both,
// emulate's batch activities start in ~0 ms instead of ~2 ms with stalls of
// 2-3 s (measured from recorded histories).
var TemporalDynamicConfig = []string{
	"history.transferProcessorMaxPollRPS=2000",
	"matching.numTaskqueueReadPartitions=1",
	"matching.numTaskqueueWritePartitions=1",
	"system.enableActivityEagerExecution=true",
}

// FindTemporalCLI returns the path of the Temporal CLI: the explicit path,
// else $TEMPORAL_CLI, else `temporal` beside this executable, else ./bin of
// the enclosing module, else $PATH.
func FindTemporalCLI(explicit string) (string, error) {
	if explicit == "" {
		explicit = os.Getenv("TEMPORAL_CLI")
	}
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("temporal CLI %s: %w", explicit, err)
		}
		return explicit, nil
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "temporal")
		tried = append(tried, p)
		if isExecutable(p) {
			return p, nil
		}
	}
	if dir, err := os.Getwd(); err == nil {
		for ; ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				p := filepath.Join(dir, "bin", "temporal")
				tried = append(tried, p)
				if isExecutable(p) {
					return p, nil
				}
				break
			}
			if dir == filepath.Dir(dir) {
				break
			}
		}
	}
	if p, err := exec.LookPath("temporal"); err == nil {
		return p, nil
	}
	tried = append(tried, "$PATH")
	return "", fmt.Errorf("the Temporal CLI was not found (looked in %v): run `make temporal` "+
		"(go install github.com/temporalio/cli/cmd/temporal@%s into ./bin), set TEMPORAL_CLI to its path, "+
		"or set TEMPORAL_ADDRESS to a running Temporal", tried, TemporalCLIVersion)
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// temporalServer is the Temporal CLI's dev server running as a child process.
type temporalServer struct {
	cmd  *exec.Cmd
	done chan error
}

type temporalOptions struct {
	cli                    string
	port, uiPort, httpPort int
	dbFile                 string // "" keeps it in memory
	tuned                  bool
	log                    io.Writer
}

func startTemporal(opts temporalOptions) (*temporalServer, error) {
	args := []string{"server", "start-dev",
		"--ip", "127.0.0.1",
		"--port", strconv.Itoa(opts.port),
		"--ui-port", strconv.Itoa(opts.uiPort),
		"--http-port", strconv.Itoa(opts.httpPort),
		"--log-level", "error",
	}
	if opts.dbFile != "" {
		args = append(args, "--db-filename", opts.dbFile)
	}
	if opts.tuned {
		for _, kv := range TemporalDynamicConfig {
			args = append(args, "--dynamic-config-value", kv)
		}
	}
	cmd := exec.Command(opts.cli, args...)
	cmd.Stdout, cmd.Stderr = opts.log, opts.log
	// Its own process group, so a Ctrl-C in the terminal reaches us first and
	// we stop it in order; and killed with us if we die without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the Temporal dev server (%s): %w", opts.cli, err)
	}
	t := &temporalServer{cmd: cmd, done: make(chan error, 1)}
	go func() { t.done <- cmd.Wait() }()
	return t, nil
}

// waitReady polls the frontend and the Web UI until both answer.
func (t *temporalServer) waitReady(ctx context.Context, hostPort, uiURL string) error {
	for {
		select {
		case err := <-t.done:
			t.done <- err
			return fmt.Errorf("the Temporal dev server exited before it was ready: %v", err)
		default:
		}
		if err := pingTemporal(ctx, hostPort); err == nil && (uiURL == "" || pingHTTP(ctx, uiURL) == nil) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the Temporal dev server on %s did not become ready: %w", hostPort, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (t *temporalServer) stop(timeout time.Duration) error {
	if t == nil {
		return nil
	}
	_ = syscall.Kill(-t.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-t.done:
		return nil
	case <-time.After(timeout):
		_ = syscall.Kill(-t.cmd.Process.Pid, syscall.SIGKILL)
		<-t.done
		return errors.New("the Temporal dev server did not stop on SIGTERM and was killed")
	}
}

// pingTemporal dials the frontend and checks its health; the dial drops the
// SDK's logs, which would narrate every attempt while the server starts.
func pingTemporal(ctx context.Context, hostPort string) error {
	c, err := temporalclient.Dial(ctx, temporalclient.Options{HostPort: hostPort, DialTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

func pingHTTP(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := clients.NewHTTPClient(nil, 2*time.Second).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}
