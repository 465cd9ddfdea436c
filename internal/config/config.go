// Package config is shopstream's one configuration: plain data, a table of
// settings that the command line turns into flags with environment variables
// (the seed's names where one exists), an optional .env file that fills in
// variables that are not set, and defaults that point at the embedded stack
// that `shopstream dev` runs. It knows nothing of the command-line library.
package config

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shopstream/shopstream/internal/records"
)

// Config is the effective configuration of one command.
type Config struct {
	KafkaBrokers      []string
	SchemaRegistryURL string
	TemporalAddress   string
	TemporalNamespace string
	TemporalUIURL     string
	TaskQueue         string
	DatabaseDSN       string
	KafkaConnectURL   string
	KsqlDBURL         string
	MetricsAddr       string
	DataDir           string
	BlobURL           string
	// APITokensFile holds the product API's hashed bearer tokens; empty:
	// TokensFile's default.
	APITokensFile string
	Topics        records.Topics
	DialTimeout   time.Duration

	// How clients authenticate and encrypt (security.go).
	KafkaSecurity    KafkaSecurity
	Registry         RegistryAuth
	TemporalSecurity TemporalSecurity
}

// Embedded-stack addresses: `shopstream dev` listens here and every other
// command connects here unless told otherwise.
const (
	DefaultKafkaBrokers      = "127.0.0.1:9092"
	DefaultSchemaRegistryURL = "http://127.0.0.1:8081"
	DefaultTemporalAddress   = "127.0.0.1:7233"
	DefaultTemporalUIURL     = "http://127.0.0.1:8233"
	DefaultTaskQueue         = "shopstream"
)

// Default is the configuration with every default, as `shopstream dev` uses.
// The settings table takes its defaults from here, so the two cannot differ.
func Default() *Config {
	return &Config{
		KafkaBrokers:      []string{DefaultKafkaBrokers},
		SchemaRegistryURL: DefaultSchemaRegistryURL,
		TemporalAddress:   DefaultTemporalAddress,
		TemporalNamespace: "default",
		TemporalUIURL:     DefaultTemporalUIURL,
		TaskQueue:         DefaultTaskQueue,
		MetricsAddr:       "auto",
		DataDir:           ".data",
		Topics:            records.DefaultTopics(),
		DialTimeout:       10 * time.Second,
		KafkaSecurity:     KafkaSecurity{Protocol: ProtocolPlaintext, EndpointIdentification: true},
	}
}

// Setting is one configuration setting: the flag that sets it, its
// environment variable, its default, and how it is read from and written to
// a Config. The command line builds its flags from this table, and
// Describe and the README test read it, so `--help`, `shopstream config` and
// the README cannot drift apart.
type Setting struct {
	// Name is the flag's name, without dashes.
	Name    string
	Env     string
	Default string
	Usage   string
	// Secret settings may hold a password; Describe masks them.
	Secret bool
	// Password settings are a secret as a whole (a password, key or
	// token): Describe says only whether they are set.
	Password bool
	Get      func(*Config) string
	// Set parses a value into the Config; the error says what is wanted.
	Set func(*Config, string) error
}

// Settings returns the table of every setting, in the order --help lists
// them. Each call returns a fresh table.
func Settings() []Setting {
	str := func(field func(*Config) *string) (func(*Config) string, func(*Config, string) error) {
		return func(c *Config) string { return *field(c) }, func(c *Config, v string) error { *field(c) = v; return nil }
	}
	s := func(name, env string, secret bool, field func(*Config) *string, usage string) Setting {
		get, set := str(field)
		return Setting{Name: name, Env: env, Usage: usage, Secret: secret, Get: get, Set: set}
	}
	out := []Setting{
		{Name: "kafka-brokers", Env: "KAFKA_BROKERS", Usage: "Kafka bootstrap brokers, comma-separated",
			Get: func(c *Config) string { return strings.Join(c.KafkaBrokers, ",") },
			Set: func(c *Config, v string) error { c.KafkaBrokers = SplitList(v); return nil }},
		s("schema-registry-url", "SCHEMA_REGISTRY_URL", true, func(c *Config) *string { return &c.SchemaRegistryURL }, "Confluent-compatible schema registry URL (user:password@ allowed)"),
		s("temporal-address", "TEMPORAL_ADDRESS", false, func(c *Config) *string { return &c.TemporalAddress }, "Temporal frontend host:port"),
		s("temporal-namespace", "TEMPORAL_NAMESPACE", false, func(c *Config) *string { return &c.TemporalNamespace }, "Temporal namespace"),
		{Name: "temporal-ui-url", Env: "TEMPORAL_UI_URL", Usage: "Temporal Web UI base URL, for the links the commands print",
			Get: func(c *Config) string { return c.TemporalUIURL },
			Set: func(c *Config, v string) error { c.TemporalUIURL = strings.TrimRight(v, "/"); return nil }},
		s("task-queue", "TEMPORAL_TASK_QUEUE", false, func(c *Config) *string { return &c.TaskQueue }, "Temporal task queue of shopstream's workers"),
		s("database-dsn", "DATABASE_DSN", true, func(c *Config) *string { return &c.DatabaseDSN }, "PostgreSQL DSN; empty: the dev stack's own cluster when PostgreSQL is installed"),
		s("kafka-connect-url", "KAFKA_CONNECT_URL", true, func(c *Config) *string { return &c.KafkaConnectURL }, "Kafka Connect REST URL; empty skips the connectors step"),
		s("ksqldb-url", "KSQLDB_URL", true, func(c *Config) *string { return &c.KsqlDBURL }, "ksqlDB REST URL; empty skips the ksqlDB step"),
		s("metrics-addr", "METRICS_ADDR", false, func(c *Config) *string { return &c.MetricsAddr }, "where this process serves /metrics: host:port, \"auto\" (127.0.0.1 and a port per command, see README) or \"off\""),
		s("data-dir", "SHOPSTREAM_DATA_DIR", false, func(c *Config) *string { return &c.DataDir }, "where the embedded stack keeps its state"),
		s("blob-url", "BLOB_URL", true, func(c *Config) *string { return &c.BlobURL }, "where collected images are stored: a directory, file:///dir, s3://bucket?endpoint=…&region=…, or mem://; empty: <data-dir>/images"),
		// The product API's authentication.
		s("api-tokens-file", "API_TOKENS_FILE", false, func(c *Config) *string { return &c.APITokensFile },
			"the product API's bearer tokens, stored hashed (`shopstream api token create` adds one); empty: <data-dir>/api-tokens.json, and no authentication while that file does not exist (the API then listens on loopback only)"),
		s("product-topic", "PRODUCT_TOPIC", false, func(c *Config) *string { return &c.Topics.Products }, "topic shops publish products to"),
		s("complete-product-topic", "PRODUCT_WITH_FULL_IMG_SET_TOPIC", false, func(c *Config) *string { return &c.Topics.CompleteProducts }, "topic of products whose images are all collected"),
		s("filtered-topic", "PRODUCT_FILTERED_TOPIC", false, func(c *Config) *string { return &c.Topics.Filtered }, "topic of products that passed the filter"),
		s("find-topic", "PRODUCT_FIND_TOPIC", false, func(c *Config) *string { return &c.Topics.Find }, "topic of users' search prompts"),
		s("recom-topic", "PERSONAL_RECOM_TOPIC", false, func(c *Config) *string { return &c.Topics.Recommendations }, "topic of per-user recommendations"),
		s("filter-topic", "FILTER_TOPIC", false, func(c *Config) *string { return &c.Topics.Filter }, "compacted control topic carrying the filter state"),
		s("filter-applied-topic", "FILTER_APPLIED_TOPIC", false, func(c *Config) *string { return &c.Topics.FilterApplied }, "compacted topic where streamer instances report the filter version they applied"),
		s("dlq-topic", "DLQ_TOPIC", false, func(c *Config) *string { return &c.Topics.DLQ }, "dead-letter topic for records that cannot be processed"),
		s("dlq-replayed-topic", "DLQ_REPLAYED_TOPIC", false, func(c *Config) *string { return &c.Topics.DLQReplayed }, "compacted ledger of the dead-lettered records `dlq replay` sent back, so each goes back once"),
		{Name: "dial-timeout", Env: "SHOPSTREAM_DIAL_TIMEOUT", Usage: "how long a command waits for Kafka, the registry or Temporal before it says it cannot reach them",
			Get: func(c *Config) string { return c.DialTimeout.String() },
			Set: func(c *Config, v string) error {
				d, err := time.ParseDuration(v)
				if err != nil || d <= 0 {
					return errors.New("want a positive duration such as 10s")
				}
				c.DialTimeout = d
				return nil
			}},
	}
	out = append(out, securitySettings()...)
	def := Default()
	for i := range out {
		out[i].Default = out[i].Get(def)
	}
	return out
}

// Parse builds a Config from each setting's value, which value returns by
// the setting's name (the command line resolves flag > environment > .env >
// default), and validates it. A value that does not parse, or a Config that
// does not validate, is an error naming the flag and what it wants.
func Parse(value func(name string) string) (*Config, error) {
	cfg := &Config{}
	for _, s := range Settings() {
		v := value(s.Name)
		if err := s.Set(cfg, v); err != nil {
			if s.Password {
				v = "*****"
			}
			return nil, fmt.Errorf("--%s %q: %w", s.Name, v, err)
		}
	}
	if err := cfg.readSecretFiles(); err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

// Validate checks what a user could get wrong, naming the flag and env var.
func (c *Config) Validate() error {
	if len(c.KafkaBrokers) == 0 {
		return fmt.Errorf("--kafka-brokers (KAFKA_BROKERS) is empty: give at least one host:port, e.g. %s", DefaultKafkaBrokers)
	}
	for _, b := range c.KafkaBrokers {
		if !strings.Contains(b, ":") {
			return fmt.Errorf("--kafka-brokers (KAFKA_BROKERS) %q: want host:port", b)
		}
	}
	for _, u := range []struct{ flag, env, val string }{
		{"schema-registry-url", "SCHEMA_REGISTRY_URL", c.SchemaRegistryURL},
		{"temporal-ui-url", "TEMPORAL_UI_URL", c.TemporalUIURL},
		{"kafka-connect-url", "KAFKA_CONNECT_URL", c.KafkaConnectURL},
		{"ksqldb-url", "KSQLDB_URL", c.KsqlDBURL},
	} {
		if u.val == "" {
			continue
		}
		p, err := url.Parse(u.val)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("--%s (%s) %q: want an http:// or https:// URL", u.flag, u.env, Mask(u.val))
		}
	}
	if c.SchemaRegistryURL == "" {
		return fmt.Errorf("--schema-registry-url (SCHEMA_REGISTRY_URL) is empty: give the registry's URL, e.g. %s", DefaultSchemaRegistryURL)
	}
	if !strings.Contains(c.TemporalAddress, ":") {
		return fmt.Errorf("--temporal-address (TEMPORAL_ADDRESS) %q: want host:port, e.g. %s", c.TemporalAddress, DefaultTemporalAddress)
	}
	seen := map[string]string{}
	for _, t := range []struct{ flag, name string }{
		{"product-topic", c.Topics.Products}, {"complete-product-topic", c.Topics.CompleteProducts},
		{"filtered-topic", c.Topics.Filtered}, {"find-topic", c.Topics.Find},
		{"recom-topic", c.Topics.Recommendations}, {"filter-topic", c.Topics.Filter},
		{"filter-applied-topic", c.Topics.FilterApplied}, {"dlq-topic", c.Topics.DLQ},
		{"dlq-replayed-topic", c.Topics.DLQReplayed},
	} {
		if t.name == "" {
			return fmt.Errorf("--%s is empty: every topic needs a name", t.flag)
		}
		if other, ok := seen[t.name]; ok {
			return fmt.Errorf("--%s and --%s both name topic %q: each topic must be distinct", other, t.flag, t.name)
		}
		seen[t.name] = t.flag
	}
	return c.validateSecurity()
}

// Default /metrics ports per command, so that `dev` and any command started
// beside it on the same host do not collide.
var metricsPorts = map[string]int{
	"dev": 9464, "worker": 9465, "streamer": 9466, "sink": 9467,
	"collector": 9468, "recommender": 9469, "api": 9470,
}

// LocalMetricsAddrs are the addresses where each command serves /metrics
// on this host with --metrics-addr auto, dev's first.
func LocalMetricsAddrs() []string {
	out := make([]string, 0, len(metricsPorts))
	for _, p := range metricsPorts {
		out = append(out, fmt.Sprintf("127.0.0.1:%d", p))
	}
	sort.Strings(out)
	return out
}

// MetricsAddrFor resolves --metrics-addr for a command: "auto" gives the
// command's own port on loopback, "off" or "" gives nothing.
func (c *Config) MetricsAddrFor(command string) string {
	switch c.MetricsAddr {
	case "off", "":
		return ""
	case "auto":
		if p, ok := metricsPorts[command]; ok {
			return fmt.Sprintf("127.0.0.1:%d", p)
		}
		return "127.0.0.1:0"
	}
	return c.MetricsAddr
}

// TokensFile is the product API's tokens file: --api-tokens-file, or
// api-tokens.json in the data directory.
func (c *Config) TokensFile() string {
	if c.APITokensFile != "" {
		return c.APITokensFile
	}
	return filepath.Join(c.DataDir, "api-tokens.json")
}

// WorkflowURL links a workflow execution in the Temporal Web UI.
func (c *Config) WorkflowURL(workflowID, runID string) string {
	u := fmt.Sprintf("%s/namespaces/%s/workflows/%s", c.TemporalUIURL, url.PathEscape(c.TemporalNamespace), url.PathEscape(workflowID))
	if runID != "" {
		u += "/" + url.PathEscape(runID)
	}
	return u
}

// Describe writes the effective configuration, secrets masked.
func (c *Config) Describe(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SETTING\tENV\tVALUE")
	for _, s := range Settings() {
		v := s.Get(c)
		switch {
		case s.Password && v != "":
			v = "***** (set)"
		case s.Secret:
			v = Mask(v)
		}
		if v == "" {
			v = "(not set)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.Env, v)
	}
	return tw.Flush()
}

// secretKeys are the names, in a query string or a key=value DSN, whose
// values Mask hides: compared in lower case, and also as a suffix after "_"
// or "-" (api_key, x-auth-token, client_secret).
var secretKeys = []string{"password", "passwd", "pwd", "pass", "secret", "token", "key", "apikey", "api_key", "access_token",
	"credential", "credentials", "signature", "sig", "auth", "authorization", "sslpassword"}

func isSecretKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range secretKeys {
		if k == s || strings.HasSuffix(k, "_"+s) || strings.HasSuffix(k, "-"+s) || strings.HasSuffix(k, "."+s) {
			return true
		}
	}
	return false
}

// userinfo finds the "user:password@" of a URL that net/url may refuse to
// parse (a password with a "%" that is no escape, a space, a "#").
var userinfo = regexp.MustCompile(`(?i)^([a-z][a-z0-9+.-]*://[^:/?#@\s]*):(.*)@`)

// queryParam finds name=value pairs of a query string, whatever else the
// string holds.
var queryParam = regexp.MustCompile(`([?&;])([^=&;#?\s]+)=([^&;#\s]*)`)

// Mask hides the secrets of a URL or key=value DSN: the password of its
// user info, and the values of query parameters and DSN keys that name a
// password, token, key or secret. It works on the text, so a URL that
// net/url cannot parse is masked too.
func Mask(v string) string {
	if v == "" {
		return v
	}
	if strings.Contains(v, "://") {
		// The last "@" before the query ends the user info: a password
		// may hold "@" or "/" itself. A path with an "@" is masked too
		// much, which is the safe way to be wrong.
		scheme := strings.Index(v, "://") + 3
		end := len(v)
		if i := strings.IndexAny(v[scheme:], "?#"); i >= 0 {
			end = scheme + i
		}
		head, tail := v[:end], v[end:]
		if at := strings.LastIndex(head, "@"); at >= 0 {
			if m := userinfo.FindStringSubmatchIndex(head[:at+1]); m != nil {
				head = head[:m[3]] + ":*****" + head[at:]
			}
		}
		v = head + tail
		return queryParam.ReplaceAllStringFunc(v, func(p string) string {
			m := queryParam.FindStringSubmatch(p)
			if !isSecretKey(m[2]) || m[3] == "" {
				return p
			}
			return m[1] + m[2] + "=*****"
		})
	}
	// key=value DSN: password=secret
	fields := strings.Fields(v)
	for i, f := range fields {
		if k, val, ok := strings.Cut(f, "="); ok && val != "" && isSecretKey(k) {
			fields[i] = k + "=*****"
		}
	}
	return strings.Join(fields, " ")
}

// SplitList splits a comma-separated setting, trimming white space and
// dropping empty items ("a, b,," is [a b]).
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
