package helm

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// No Docker engine runs here, so the image itself is not built; what can be
// checked is that environment/Dockerfile's build command, run as it is
// outside Docker, gives a static binary (no program interpreter, no shared
// library), and that the chart runs the image Docker Compose builds.
func TestDockerfileBuildsAStaticBinary(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(b)
	if !regexp.MustCompile(`(?m)^ENV .*\bCGO_ENABLED=0\b`).MatchString(dockerfile) {
		t.Fatal("environment/Dockerfile does not set CGO_ENABLED=0")
	}
	m := regexp.MustCompile(`(?m)^RUN go build (.*) -o /out/shopstream \./cli\b`).FindStringSubmatch(dockerfile)
	if m == nil {
		t.Fatal("environment/Dockerfile has no `RUN go build … -o /out/shopstream ./cli`")
	}
	out := filepath.Join(t.TempDir(), "shopstream")
	// Through sh -c, as Docker runs a RUN line, so its quoting means the same.
	cmd := exec.Command("sh", "-c", "go build "+m[1]+` -o "$OUT" ./cli`)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd.Args[2], err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary names a program interpreter: it is dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v (%v)", libs, err)
	}
}

func TestChartRunsTheComposeImage(t *testing.T) {
	compose, err := os.ReadFile(filepath.Join("..", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s+dockerfile: environment/Dockerfile\n\s+image: (\S+)$`).FindSubmatch(compose)
	if m == nil {
		t.Fatal("environment/compose.yaml builds no image from environment/Dockerfile")
	}
	vals := values(t, "")
	if got := lookup(vals, "image.repository").(string) + ":" + lookup(vals, "image.tag").(string); got != string(m[1]) {
		t.Errorf("the chart's default image is %s; compose builds environment/Dockerfile as %s", got, m[1])
	}
}
