package main

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shopstream/shopstream/environment"
)

// The real binary on the real fixed ports: `shopstream dev` becomes ready,
// then SIGTERM stops it and its Temporal child process within 10 s.
func TestDevBinaryStopsOnSIGTERM(t *testing.T) {
	for _, p := range []int{environment.KafkaPort, environment.RegistryPort, environment.TemporalPort, environment.TemporalUIPort, 9464} {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("port %d is taken on CI: %v", p, err)
			}
			t.Skipf("port %d is taken (a `shopstream dev` running here?): %v", p, err)
		}
		ln.Close()
	}
	bin := filepath.Join(t.TempDir(), "shopstream")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "dev", "--data-dir", devDataDir(t), "--log-level", "warn")
	cmd.Env = os.Environ()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string
	deadline := time.After(2 * time.Minute)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("dev exited before ready:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			if strings.Contains(l, "shopstream dev: ready") {
				break wait
			}
		case <-deadline:
			t.Fatalf("dev not ready in 2 minutes:\n%s", strings.Join(seen, "\n"))
		}
	}
	for _, want := range []string{"127.0.0.1:9092", "http://127.0.0.1:8081", "127.0.0.1:7233", "http://127.0.0.1:8233", "/metrics"} {
		if !strings.Contains(strings.Join(seen, "\n"), want) {
			t.Errorf("dev's output does not show endpoint %s", want)
		}
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for range lines {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("dev exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dev did not stop within 10 s of SIGTERM")
	}
	t.Logf("stopped in %s", time.Since(start))
	// The Temporal child went with it: nothing answers on its port.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:7233", time.Second); err == nil {
		c.Close()
		t.Error("something still listens on 127.0.0.1:7233 after dev stopped: the Temporal child outlived it")
	}
}
