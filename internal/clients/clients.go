// Package clients is the one place shopstream builds its Kafka and schema
// registry clients, so that how a process connects (seed brokers, timeouts,
// and later TLS and SASL) is decided once, and "cannot connect" becomes an
// error that names the address and says what to do. Components and commands
// are given a *Kafka and create every client through it. The Temporal
// client is built in the subpackage temporalclient.
package clients

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/records"
)

// DefaultDialTimeout is the dial timeout when KafkaOptions give none; it is
// also franz-go's default request-timeout overhead, so a zero
// KafkaOptions.DialTimeout changes nothing of franz-go's defaults.
const DefaultDialTimeout = 10 * time.Second

// KafkaOptions say where a process's Kafka clients connect and how.
type KafkaOptions struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// DialTimeout bounds each connection attempt, and how long a request
	// waits for an answer beyond its own timeout (DefaultDialTimeout).
	DialTimeout time.Duration
}

// Kafka holds the options every Kafka client of a process starts from. It
// is immutable and safe to share: With and WithLogger return new values.
type Kafka struct {
	brokers     []string
	dialTimeout time.Duration
	opts        []kgo.Opt
}

// NewKafka checks o and returns the base of the process's Kafka clients.
func NewKafka(o KafkaOptions) (*Kafka, error) {
	if len(o.Brokers) == 0 {
		// franz-go would quietly dial localhost:9092 instead.
		return nil, errors.New("kafka clients: no seed brokers given")
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	brokers := append([]string(nil), o.Brokers...)
	return &Kafka{
		brokers:     brokers,
		dialTimeout: o.DialTimeout,
		opts: []kgo.Opt{
			kgo.SeedBrokers(brokers...),
			kgo.DialTimeout(o.DialTimeout),
			// A broker that accepts a connection and never answers would
			// otherwise hold the first request for the default 10s overhead.
			kgo.RequestTimeoutOverhead(o.DialTimeout),
		},
	}, nil
}

// KafkaFromConfig is NewKafka with the configured brokers and dial timeout.
func KafkaFromConfig(cfg *config.Config) (*Kafka, error) {
	return NewKafka(KafkaOptions{Brokers: cfg.KafkaBrokers, DialTimeout: cfg.DialTimeout})
}

// Opts returns the base options followed by extra, in a new slice, for the
// rare caller that must hand options to code that builds its own client.
func (k *Kafka) Opts(extra ...kgo.Opt) []kgo.Opt {
	out := make([]kgo.Opt, 0, len(k.opts)+len(extra))
	return append(append(out, k.opts...), extra...)
}

// With returns a Kafka whose clients also get extra: a test's shorter
// session timeout, a client id.
func (k *Kafka) With(extra ...kgo.Opt) *Kafka {
	return &Kafka{brokers: k.brokers, dialTimeout: k.dialTimeout, opts: k.Opts(extra...)}
}

// WithLogger returns a Kafka whose clients pass franz-go's warnings and
// errors to l; without it they log nothing.
func (k *Kafka) WithLogger(l *slog.Logger) *Kafka { return k.With(kgo.WithLogger(kgoLogger{l})) }

// NewClient creates a client with the base options and extra. It does not
// connect: the first request does.
func (k *Kafka) NewClient(extra ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(k.Opts(extra...)...)
	if err != nil {
		return nil, fmt.Errorf("create Kafka client for %s: %w", strings.Join(k.brokers, ","), err)
	}
	return cl, nil
}

// Connect creates a client and pings the brokers within the dial timeout, so
// an unreachable broker is an error now, not a hang later.
func (k *Kafka) Connect(ctx context.Context, extra ...kgo.Opt) (*kgo.Client, error) {
	cl, err := k.NewClient(extra...)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, k.dialTimeout)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("cannot reach Kafka at %s within %s (%v): start the embedded stack with `shopstream dev`, or set KAFKA_BROKERS / --kafka-brokers",
			strings.Join(k.brokers, ","), k.dialTimeout, err)
	}
	return cl, nil
}

// NewGroupTransactSession creates an exactly-once consume-transform-produce
// session with the base options and extra (its group, topics and
// transactional id).
func (k *Kafka) NewGroupTransactSession(extra ...kgo.Opt) (*kgo.GroupTransactSession, error) {
	sess, err := kgo.NewGroupTransactSession(k.Opts(extra...)...)
	if err != nil {
		return nil, fmt.Errorf("create Kafka group transact session for %s: %w", strings.Join(k.brokers, ","), err)
	}
	return sess, nil
}

// kgoLogger passes franz-go's warnings and errors to a slog.Logger; its
// info level narrates every transaction.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	l := slog.LevelWarn
	if level == kgo.LogLevelError {
		l = slog.LevelError
	}
	k.l.Log(context.Background(), l, "kafka: "+msg, keyvals...)
}

// NewRegistry returns a schema registry client for url (user:password@ is
// the registry's basic auth).
func NewRegistry(url string) (*sr.Client, error) {
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		return nil, fmt.Errorf("create schema registry client for %s: %w", config.Mask(url), err)
	}
	return cl, nil
}

// NewSerde returns the record serde over a registry client for url.
func NewSerde(url string) (*records.Serde, error) {
	schemas, err := records.ParseSchemas()
	if err != nil {
		return nil, err
	}
	reg, err := NewRegistry(url)
	if err != nil {
		return nil, err
	}
	return records.NewSerde(schemas, reg), nil
}
