package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/records"
)

func TestDotEnvFillsOnlyWhatIsUnset(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".env")
	if err := os.WriteFile(path, []byte("# comment\nKAFKA_BROKERS=k:1\nexport PRODUCT_TOPIC=\"quoted\"\n\nDATABASE_DSN='x y'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KAFKA_BROKERS": "from-env:9"}
	set := func(k, v string) error { env[k] = v; return nil }
	look := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := LoadDotEnv(path, set, look); err != nil {
		t.Fatal(err)
	}
	if env["KAFKA_BROKERS"] != "from-env:9" {
		t.Errorf("the file overrode the environment: %q", env["KAFKA_BROKERS"])
	}
	if env["PRODUCT_TOPIC"] != "quoted" || env["DATABASE_DSN"] != "x y" {
		t.Errorf("quotes or export not handled: %v", env)
	}
	if err := LoadDotEnv(filepath.Join(dir, "missing"), set, look); err != nil {
		t.Errorf("a missing .env is not an error: %v", err)
	}
	if err := os.WriteFile(path, []byte("JUSTAWORD\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := LoadDotEnv(path, set, look); err == nil || !strings.Contains(err.Error(), ".env:1: want KEY=VALUE") {
		t.Errorf("a bad line: got %v", err)
	}
}

func TestMask(t *testing.T) {
	for i, c := range []struct{ in, want string }{
		{"postgres://u:secret@h:5432/db?sslmode=disable", "postgres://u:*****@h:5432/db?sslmode=disable"},
		{"host=h user=u password=secret dbname=d", "host=h user=u password=***** dbname=d"},
		{"http://registry:8081", "http://registry:8081"},
		{"", ""},
		// Query parameters that carry a secret.
		{"http://connect:8083/?password=hunter2", "http://connect:8083/?password=*****"},
		{"https://h/x?user=u&token=abc&secret=s3&region=eu", "https://h/x?user=u&token=*****&secret=*****&region=eu"},
		{"s3://bucket?endpoint=http://minio:9000&access_key=AK&secret_key=SK", "s3://bucket?endpoint=http://minio:9000&access_key=*****&secret_key=*****"},
		{"postgres://h/db?sslmode=require&sslpassword=p", "postgres://h/db?sslmode=require&sslpassword=*****"},
		{"http://ksqldb:8088?api_key=k;X-Auth-Token=t", "http://ksqldb:8088?api_key=*****;X-Auth-Token=*****"},
		// URLs net/url refuses still lose their password.
		{"http://u:pa%zz@connect:8083", "http://u:*****@connect:8083"},
		{"http://u:p@ss word@h:1/x", "http://u:*****@h:1/x"},
		{"postgres://u:pa/ss@h/db", "postgres://u:*****@h/db"},
		{"http://:only-password@h", "http://:*****@h"},
		{"http://user@h/no-password", "http://user@h/no-password"},
		{"host=h user=u sslpassword=p dbname=d", "host=h user=u sslpassword=***** dbname=d"},
	} {
		if got := Mask(c.in); got != c.want {
			t.Errorf("#%d: Mask(%q) = %q, want %q", i, c.in, got, c.want)
		}
	}
}

func TestMetricsAddrFor(t *testing.T) {
	c := Default()
	if got := c.MetricsAddrFor("dev"); got != "127.0.0.1:9464" {
		t.Errorf("auto for dev: %q", got)
	}
	if c.MetricsAddrFor("worker") == c.MetricsAddrFor("dev") {
		t.Error("worker and dev share a default /metrics port")
	}
	c.MetricsAddr = "off"
	if got := c.MetricsAddrFor("dev"); got != "" {
		t.Errorf("off: %q", got)
	}
	c.MetricsAddr = "0.0.0.0:9000"
	if got := c.MetricsAddrFor("dev"); got != "0.0.0.0:9000" {
		t.Errorf("explicit: %q", got)
	}
}

// The table's defaults, read back through Parse, are exactly Default(): the
// flags a command starts with describe the stack `shopstream dev` runs.
func TestParseOfTheDefaultsIsDefault(t *testing.T) {
	defaults := map[string]string{}
	for _, s := range Settings() {
		defaults[s.Name] = s.Default
	}
	got, err := Parse(func(name string) string { return defaults[name] })
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(defaults) = %+v, want %+v", got, want)
	}
}

func TestParseSaysWhichSettingIsWrong(t *testing.T) {
	for i, c := range []struct {
		name, value, want string
	}{
		{"dial-timeout", "soon", `--dial-timeout "soon": want a positive duration such as 10s`},
		{"dial-timeout", "-1s", `--dial-timeout "-1s": want a positive duration such as 10s`},
		{"kafka-brokers", " , ", "--kafka-brokers (KAFKA_BROKERS) is empty"},
		{"dlq-topic", records.DefaultTopics().Products, `--product-topic and --dlq-topic both name topic "shop_products"`},
	} {
		values := map[string]string{}
		for _, s := range Settings() {
			values[s.Name] = s.Default
		}
		values[c.name] = c.value
		_, err := Parse(func(name string) string { return values[name] })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("#%d: --%s %q: got %v, want an error saying %q", i, c.name, c.value, err, c.want)
		}
	}
}

func TestSettingsWriteWhatTheyRead(t *testing.T) {
	c := Default()
	for _, s := range Settings() {
		if err := s.Set(c, s.Get(c)); err != nil {
			t.Errorf("--%s: setting its own value %q: %v", s.Name, s.Get(c), err)
		}
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("writing each setting's value back changed the config: %+v", c)
	}
	for _, s := range Settings() {
		if s.Name == "temporal-ui-url" {
			_ = s.Set(c, "http://ui:8233/")
		}
	}
	if c.TemporalUIURL != "http://ui:8233" {
		t.Errorf("the UI URL keeps its trailing slash: %q", c.TemporalUIURL)
	}
}

func TestParseAgeAndWhen(t *testing.T) {
	for i, c := range []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"24h", 24 * time.Hour, false}, {"90m", 90 * time.Minute, false}, {"7d", 7 * 24 * time.Hour, false},
		{"1.5d", 36 * time.Hour, false}, {"0s", 0, true}, {"-1h", 0, true}, {"soon", 0, true}, {"d", 0, true},
	} {
		got, err := ParseAge(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("#%d ParseAge(%q) = %v, %v", i, c.in, got, err)
		}
	}
	loc := time.FixedZone("X", 3600)
	for i, c := range []struct {
		in   string
		want time.Time
	}{
		{"2026-01-02T15:04:05Z", time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)},
		{"2026-01-02 15:04", time.Date(2026, 1, 2, 15, 4, 0, 0, loc)},
		{"2026-01-02", time.Date(2026, 1, 2, 0, 0, 0, 0, loc)},
	} {
		if got, err := ParseWhen(c.in, loc); err != nil || !got.Equal(c.want) {
			t.Errorf("#%d ParseWhen(%q) = %v, %v; want %v", i, c.in, got, err, c.want)
		}
	}
	if _, err := ParseWhen("yesterday", loc); err == nil {
		t.Error("ParseWhen(yesterday) did not fail")
	}
}
