// Package config is shopstream's one configuration: every setting is a flag
// with an environment variable (the seed's names where one exists), an
// optional .env file fills in variables that are not set, and each default
// points at the embedded stack that `shopstream dev` runs.
package config

import (
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

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
	Topics            records.Topics
	DialTimeout       time.Duration
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

// One flag, its env var and default; Flags and Describe share this table so
// `--help`, `shopstream config` and the README cannot drift apart.
type setting struct {
	name, env, def, usage string
	secret                bool
	get                   func(*Config) string
}

var settings = []setting{
	{"kafka-brokers", "KAFKA_BROKERS", DefaultKafkaBrokers, "Kafka bootstrap brokers, comma-separated", false, func(c *Config) string { return strings.Join(c.KafkaBrokers, ",") }},
	{"schema-registry-url", "SCHEMA_REGISTRY_URL", DefaultSchemaRegistryURL, "Confluent-compatible schema registry URL (user:password@ allowed)", true, func(c *Config) string { return c.SchemaRegistryURL }},
	{"temporal-address", "TEMPORAL_ADDRESS", DefaultTemporalAddress, "Temporal frontend host:port", false, func(c *Config) string { return c.TemporalAddress }},
	{"temporal-namespace", "TEMPORAL_NAMESPACE", "default", "Temporal namespace", false, func(c *Config) string { return c.TemporalNamespace }},
	{"temporal-ui-url", "TEMPORAL_UI_URL", DefaultTemporalUIURL, "Temporal Web UI base URL, for the links the commands print", false, func(c *Config) string { return c.TemporalUIURL }},
	{"task-queue", "TEMPORAL_TASK_QUEUE", DefaultTaskQueue, "Temporal task queue of shopstream's workers", false, func(c *Config) string { return c.TaskQueue }},
	{"database-dsn", "DATABASE_DSN", "", "PostgreSQL DSN; empty: the dev stack's own cluster when PostgreSQL is installed", true, func(c *Config) string { return c.DatabaseDSN }},
	{"kafka-connect-url", "KAFKA_CONNECT_URL", "", "Kafka Connect REST URL; empty skips the connectors step", true, func(c *Config) string { return c.KafkaConnectURL }},
	{"ksqldb-url", "KSQLDB_URL", "", "ksqlDB REST URL; empty skips the ksqlDB step", true, func(c *Config) string { return c.KsqlDBURL }},
	{"metrics-addr", "METRICS_ADDR", "auto", "where this process serves /metrics: host:port, \"auto\" (127.0.0.1 and a port per command, see README) or \"off\"", false, func(c *Config) string { return c.MetricsAddr }},
	{"data-dir", "SHOPSTREAM_DATA_DIR", ".data", "where the embedded stack keeps its state", false, func(c *Config) string { return c.DataDir }},
	{"blob-url", "BLOB_URL", "", "where collected images are stored: a directory, file:///dir, s3://bucket?endpoint=…&region=…, or mem://; empty: <data-dir>/images", true, func(c *Config) string { return c.BlobURL }},
	{"product-topic", "PRODUCT_TOPIC", records.DefaultTopics().Products, "topic shops publish products to", false, func(c *Config) string { return c.Topics.Products }},
	{"complete-product-topic", "PRODUCT_WITH_FULL_IMG_SET_TOPIC", records.DefaultTopics().CompleteProducts, "topic of products whose images are all collected", false, func(c *Config) string { return c.Topics.CompleteProducts }},
	{"filtered-topic", "PRODUCT_FILTERED_TOPIC", records.DefaultTopics().Filtered, "topic of products that passed the filter", false, func(c *Config) string { return c.Topics.Filtered }},
	{"find-topic", "PRODUCT_FIND_TOPIC", records.DefaultTopics().Find, "topic of users' search prompts", false, func(c *Config) string { return c.Topics.Find }},
	{"recom-topic", "PERSONAL_RECOM_TOPIC", records.DefaultTopics().Recommendations, "topic of per-user recommendations", false, func(c *Config) string { return c.Topics.Recommendations }},
	{"filter-topic", "FILTER_TOPIC", records.DefaultTopics().Filter, "compacted control topic carrying the filter state", false, func(c *Config) string { return c.Topics.Filter }},
	{"filter-applied-topic", "FILTER_APPLIED_TOPIC", records.DefaultTopics().FilterApplied, "compacted topic where streamer instances report the filter version they applied", false, func(c *Config) string { return c.Topics.FilterApplied }},
	{"dlq-topic", "DLQ_TOPIC", records.DefaultTopics().DLQ, "dead-letter topic for records that cannot be processed", false, func(c *Config) string { return c.Topics.DLQ }},
	{"dial-timeout", "SHOPSTREAM_DIAL_TIMEOUT", "10s", "how long a command waits for Kafka, the registry or Temporal before it says it cannot reach them", false, func(c *Config) string { return c.DialTimeout.String() }},
}

// Flags returns a fresh copy of the shared flags, for a command to append its
// own to.
func Flags() []cli.Flag {
	out := make([]cli.Flag, 0, len(settings))
	for _, s := range settings {
		out = append(out, &cli.StringFlag{
			Name: s.name, EnvVars: []string{s.env}, Value: s.def, Usage: s.usage,
			Category: "Connections and topics",
		})
	}
	return out
}

// FromContext reads the shared flags from a command's context and checks them.
func FromContext(c *cli.Context) (*Config, error) {
	cfg := &Config{
		KafkaBrokers:      splitList(c.String("kafka-brokers")),
		SchemaRegistryURL: c.String("schema-registry-url"),
		TemporalAddress:   c.String("temporal-address"),
		TemporalNamespace: c.String("temporal-namespace"),
		TemporalUIURL:     strings.TrimRight(c.String("temporal-ui-url"), "/"),
		TaskQueue:         c.String("task-queue"),
		DatabaseDSN:       c.String("database-dsn"),
		KafkaConnectURL:   c.String("kafka-connect-url"),
		KsqlDBURL:         c.String("ksqldb-url"),
		MetricsAddr:       c.String("metrics-addr"),
		DataDir:           c.String("data-dir"),
		BlobURL:           c.String("blob-url"),
		Topics: records.Topics{
			Products:         c.String("product-topic"),
			CompleteProducts: c.String("complete-product-topic"),
			Filtered:         c.String("filtered-topic"),
			Find:             c.String("find-topic"),
			Recommendations:  c.String("recom-topic"),
			Filter:           c.String("filter-topic"),
			FilterApplied:    c.String("filter-applied-topic"),
			DLQ:              c.String("dlq-topic"),
		},
	}
	d, err := time.ParseDuration(c.String("dial-timeout"))
	if err != nil || d <= 0 {
		return nil, fmt.Errorf("--dial-timeout %q: want a positive duration such as 10s", c.String("dial-timeout"))
	}
	cfg.DialTimeout = d
	return cfg, cfg.Validate()
}

// Default is the configuration with every default, as `shopstream dev` uses.
func Default() *Config {
	app := &cli.App{Flags: Flags()}
	var cfg *Config
	app.Action = func(c *cli.Context) (err error) { cfg, err = FromContext(c); return err }
	if err := app.Run([]string{"default"}); err != nil {
		panic(err) // the defaults are constants; a failure here is a programming error
	}
	return cfg
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
	} {
		if t.name == "" {
			return fmt.Errorf("--%s is empty: every topic needs a name", t.flag)
		}
		if other, ok := seen[t.name]; ok {
			return fmt.Errorf("--%s and --%s both name topic %q: each topic must be distinct", other, t.flag, t.name)
		}
		seen[t.name] = t.flag
	}
	return nil
}

// Default /metrics ports per command, so that `dev` and any command started
// beside it on the same host do not collide.
var metricsPorts = map[string]int{
	"dev": 9464, "worker": 9465, "streamer": 9466, "sink": 9467,
	"collector": 9468, "recommender": 9469, "api": 9470,
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
	for _, s := range settings {
		v := s.get(c)
		if s.secret {
			v = Mask(v)
		}
		if v == "" {
			v = "(not set)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.name, s.env, v)
	}
	return tw.Flush()
}

// Mask hides the password of a URL or key=value DSN.
func Mask(v string) string {
	if v == "" {
		return v
	}
	if u, err := url.Parse(v); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return strings.Replace(u.String(), "xxxxx", "*****", 1)
		}
		return v
	}
	// key=value DSN: password=secret
	fields := strings.Fields(v)
	for i, f := range fields {
		if k, _, ok := strings.Cut(f, "="); ok && strings.EqualFold(k, "password") {
			fields[i] = k + "=*****"
		}
	}
	return strings.Join(fields, " ")
}

// EnvTable lists every setting as (flag, env, default), for docs.
func EnvTable() [][3]string {
	out := make([][3]string, 0, len(settings))
	for _, s := range settings {
		out = append(out, [3]string{"--" + s.name, s.env, s.def})
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
