// Package clients is the one place shopstream builds its Kafka and schema
// registry clients, so that how a process connects (seed brokers, timeouts,
// and later TLS and SASL) is decided once, and "cannot connect" becomes an
// error that names the address and says what to do. Components and commands
// are given a *Kafka and create every client through it. The Temporal
// client is built in the subpackage temporalclient.
package clients

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
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
	// Security is TLS and SASL; the zero value is PLAINTEXT.
	Security config.KafkaSecurity
	// Logger hears, once, about a weakened setup (endpoint identification
	// off, a password sent in the clear); nil drops it.
	Logger *slog.Logger
	// Now is the clock of the OAUTHBEARER token refresh (time.Now).
	Now func() time.Time
}

// Kafka holds the options every Kafka client of a process starts from. It
// is immutable and safe to share: With and WithLogger return new values.
type Kafka struct {
	o    KafkaOptions
	base []kgo.Opt // from o
	with []kgo.Opt // added by With
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
	if o.Security.Protocol == "" {
		o.Security.Protocol = config.ProtocolPlaintext
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Brokers = append([]string(nil), o.Brokers...)
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.DialTimeout(o.DialTimeout),
		// A broker that accepts a connection and never answers would
		// otherwise hold the first request for the default 10s overhead.
		kgo.RequestTimeoutOverhead(o.DialTimeout),
	}
	sec, err := securityOpts(o)
	if err != nil {
		return nil, err
	}
	return &Kafka{o: o, base: append(opts, sec...)}, nil
}

// KafkaFromConfig is NewKafka with the configured brokers, dial timeout and
// security; logger hears about a weakened setup.
func KafkaFromConfig(cfg *config.Config, logger *slog.Logger) (*Kafka, error) {
	return NewKafka(KafkaOptions{Brokers: cfg.KafkaBrokers, DialTimeout: cfg.DialTimeout, Security: cfg.KafkaSecurity, Logger: logger})
}

// As returns a Kafka with the same brokers, TLS and mechanism whose clients
// authenticate as another user: `shopstream dev --secure` runs each
// component as its own principal.
func (k *Kafka) As(username, password string) (*Kafka, error) {
	o := k.o
	o.Security.Username, o.Security.Password, o.Security.PasswordFile = username, password, ""
	nk, err := NewKafka(o)
	if err != nil {
		return nil, err
	}
	// Options added with With (a client id, a logger) carry over.
	nk.with = k.with
	return nk, nil
}

// Principal is the Kafka principal the clients authenticate as, as ACLs
// name it ("User:alice"), or "" when the cluster decides (TLS without a
// client certificate, OAUTHBEARER, IAM, PLAINTEXT).
func (k *Kafka) Principal() string {
	if k.o.Security.SASL() && k.o.Security.Username != "" {
		return "User:" + k.o.Security.Username
	}
	return ""
}

// Opts returns the base options followed by extra, in a new slice, for the
// rare caller that must hand options to code that builds its own client.
func (k *Kafka) Opts(extra ...kgo.Opt) []kgo.Opt {
	out := make([]kgo.Opt, 0, len(k.base)+len(k.with)+len(extra))
	return append(append(append(out, k.base...), k.with...), extra...)
}

// With returns a Kafka whose clients also get extra: a test's shorter
// session timeout, a client id.
func (k *Kafka) With(extra ...kgo.Opt) *Kafka {
	with := append(append([]kgo.Opt(nil), k.with...), extra...)
	return &Kafka{o: k.o, base: k.base, with: with}
}

// WithLogger returns a Kafka whose clients pass franz-go's warnings and
// errors to l; without it they log nothing.
func (k *Kafka) WithLogger(l *slog.Logger) *Kafka { return k.With(kgo.WithLogger(kgoLogger{l})) }

// ClientID is the client id the Kafka clients of a component send with
// every request: a broker's request log, its quotas and a fault injected
// on the wire tell the components apart by it.
func ClientID(component string) string { return "shopstream-" + component }

// NewClient creates a client with the base options and extra. It does not
// connect: the first request does.
func (k *Kafka) NewClient(extra ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(k.Opts(extra...)...)
	if err != nil {
		return nil, fmt.Errorf("create Kafka client for %s: %w", strings.Join(k.o.Brokers, ","), err)
	}
	return cl, nil
}

// Connect creates a client and pings the brokers within the dial timeout,
// so an unreachable broker, a wrong password or a TLS mismatch is an error
// now, not a hang later, and one that names the broker, the mechanism and
// the user and says what to check.
func (k *Kafka) Connect(ctx context.Context, extra ...kgo.Opt) (*kgo.Client, error) {
	pctx, cancel := context.WithTimeout(ctx, k.o.DialTimeout)
	defer cancel()
	d := newDiagnosis(k.o.Security, cancel)
	cl, err := k.NewClient(append(extra, kgo.WithHooks(d))...)
	if err != nil {
		return nil, err
	}
	if err := cl.Ping(pctx); err != nil {
		cl.Close()
		return nil, d.explain(k.o, err)
	}
	return cl, nil
}

// NewGroupTransactSession creates an exactly-once consume-transform-produce
// session with the base options and extra (its group, topics and
// transactional id).
func (k *Kafka) NewGroupTransactSession(extra ...kgo.Opt) (*kgo.GroupTransactSession, error) {
	sess, err := kgo.NewGroupTransactSession(k.Opts(extra...)...)
	if err != nil {
		return nil, fmt.Errorf("create Kafka group transact session for %s: %w", strings.Join(k.o.Brokers, ","), err)
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

// RegistryOptions say where the schema registry is and how to
// authenticate to it.
type RegistryOptions struct {
	// URL is the registry; user:password@ in it is basic auth.
	URL  string
	Auth config.RegistryAuth
	// Timeout bounds each request (5s, as franz-go's registry client).
	Timeout time.Duration
}

// RegistryFromConfig are the RegistryOptions of the configured registry.
func RegistryFromConfig(cfg *config.Config) RegistryOptions {
	return RegistryOptions{URL: cfg.SchemaRegistryURL, Auth: cfg.Registry}
}

// NewRegistry returns a schema registry client with o's credentials and
// TLS.
func NewRegistry(o RegistryOptions) (*sr.Client, error) {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	var tlsCfg *tls.Config
	if a := o.Auth; a.CALocation != "" || a.CertificateLocation != "" {
		var err error
		if tlsCfg, err = TLSConfig(TLSFiles{CA: a.CALocation, Cert: a.CertificateLocation, Key: a.KeyLocation}, "SCHEMA_REGISTRY_SSL_"); err != nil {
			return nil, err
		}
	}
	opts := []sr.ClientOpt{sr.URLs(o.URL), sr.HTTPClient(NewHTTPClient(tlsCfg, o.Timeout))}
	switch {
	case o.Auth.BearerToken != "":
		opts = append(opts, sr.BearerToken(o.Auth.BearerToken))
	case o.Auth.Username != "":
		opts = append(opts, sr.BasicAuth(o.Auth.Username, o.Auth.Password))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("create schema registry client for %s: %w", config.Mask(o.URL), err)
	}
	return cl, nil
}

// NewSerde returns the record serde over a registry client for url, with
// no credentials but what the URL holds.
func NewSerde(url string) (*records.Serde, error) {
	return NewSerdeWith(RegistryOptions{URL: url})
}

// NewSerdeWith returns the record serde over a registry client built from o.
func NewSerdeWith(o RegistryOptions) (*records.Serde, error) {
	schemas, err := records.ParseSchemas()
	if err != nil {
		return nil, err
	}
	reg, err := NewRegistry(o)
	if err != nil {
		return nil, err
	}
	return records.NewSerde(schemas, reg), nil
}

// NewHTTPClient is the HTTP client of the services shopstream calls over
// HTTP (the schema registry, an OAuth token endpoint, Kafka Connect,
// ksqlDB): Go's default transport, with tlsCfg when given, and a bound on
// each request.
func NewHTTPClient(tlsCfg *tls.Config, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if tlsCfg != nil {
		tr.TLSClientConfig = tlsCfg
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}
