package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is one shopstream process of a schedule, run as a supervisor would:
// when it exits while wanted it is started again, after restartDelay.
type proc struct {
	name string
	bin  string
	args []string
	env  []string
	logf *os.File
	// tail keeps the end of what the current process wrote, so that an
	// exit the harness did not cause is reported with its error.
	tail *tailWriter

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process exits
	wanted  bool
	killed  bool // the harness killed it on purpose
	paused  bool
	delay   time.Duration // before the next restart
	starts  int
	started time.Time // when the current process started
	crashes []exit    // exits the harness did not cause
}

func newProc(name, bin string, args, env []string, logPath string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open the log of %s: %w", name, err)
	}
	return &proc{name: name, bin: bin, args: args, env: env, logf: f, delay: 200 * time.Millisecond}, nil
}

// start starts the process and keeps it running until stop.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wanted = true
	return p.spawnLocked()
}

func (p *proc) spawnLocked() error {
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	p.tail = &tailWriter{}
	out := io.MultiWriter(p.logf, p.tail)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	fmt.Fprintf(p.logf, "--- chaos: start %s (#%d) at %s\n", p.name, p.starts+1, time.Now().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.starts++
	p.started = time.Now()
	p.cmd, p.done, p.killed, p.paused = cmd, make(chan struct{}), false, false
	go p.watch(cmd, p.done)
	return nil
}

// watch waits for one process and restarts it while it is wanted.
func (p *proc) watch(cmd *exec.Cmd, done chan struct{}) {
	err := cmd.Wait()
	close(done)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != cmd {
		return
	}
	if !p.killed && p.wanted {
		p.crashes = append(p.crashes, exit{started: p.started, at: time.Now(), text: fmt.Sprintf("%s exited by itself (%v): %s", p.name, err, p.tail.lastLine())})
	}
	fmt.Fprintf(p.logf, "--- chaos: %s exited (%v) at %s\n", p.name, err, time.Now().Format(time.RFC3339Nano))
	if !p.wanted {
		return
	}
	delay := p.delay
	p.delay = 200 * time.Millisecond
	time.AfterFunc(delay, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.wanted && p.cmd == cmd {
			if err := p.spawnLocked(); err != nil {
				p.crashes = append(p.crashes, exit{at: time.Now(), text: err.Error()})
			}
		}
	})
}

// kill sends SIGKILL; the process starts again after down.
func (p *proc) kill(down time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || !p.wanted {
		return
	}
	select {
	case <-p.done:
		return // already gone, and being restarted
	default:
	}
	p.killed, p.delay = true, down
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
}

// pause stops the process (SIGSTOP) until resume.
func (p *proc) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.paused {
		p.paused = true
		_ = p.cmd.Process.Signal(syscall.SIGSTOP)
	}
}

func (p *proc) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.paused {
		p.paused = false
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// dump makes the process print its goroutines into its log (SIGQUIT, as
// the Go runtime handles it) and end: for a schedule that did not settle.
func (p *proc) dump() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	p.wanted, p.killed = false, true
	if p.paused {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
}

// pid is the current process id, 0 when none runs.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// stop ends the process for good: SIGTERM, and SIGKILL after grace.
func (p *proc) stop(grace time.Duration) error {
	p.mu.Lock()
	p.wanted = false
	cmd, done := p.cmd, p.done
	if cmd != nil && p.paused {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		p.paused = false
	}
	p.mu.Unlock()
	defer p.logf.Close()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(grace):
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	return fmt.Errorf("%s did not stop within %s of SIGTERM", p.name, grace)
}

// exit is one exit the harness did not cause: when the process started and
// ended, and what it said last.
type exit struct {
	started, at time.Time
	text        string
}

// exits returns the exits the harness did not cause.
func (p *proc) exits() []exit {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]exit(nil), p.crashes...)
}

// stopAll stops every process at once.
func stopAll(ps []*proc, grace time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, len(ps))
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.stop(grace)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// tailWriter keeps the last few kilobytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 4 << 10

func (t *tailWriter) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(b), nil
}

// lastLine is the last line written, where a process that stops on an
// error says why.
func (t *tailWriter) lastLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := bytes.TrimRight(t.buf, "\n")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return string(b)
}
