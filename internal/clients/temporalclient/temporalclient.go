// Package temporalclient dials Temporal for shopstream's commands and its
// embedded stack. It lives apart from package clients because the streamer
// builds its Kafka clients through clients and must never link the Temporal
// SDK (DESIGN.md §3: the hot path never waits on Temporal; the layout test
// checks the streamer's dependencies).
package temporalclient

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	sdklog "go.temporal.io/sdk/log"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shopstream/shopstream/internal/config"
)

// Options say where Temporal is and how to dial it.
type Options struct {
	// HostPort is the frontend's address.
	HostPort string
	// Namespace is "default" when empty.
	Namespace string
	// DialTimeout bounds the dial and the health check (10s).
	DialTimeout time.Duration
	// Logger receives the SDK's logs; nil drops them.
	Logger *slog.Logger
	// MetricsHandler receives the SDK's metrics; nil exports none.
	MetricsHandler client.MetricsHandler
	// Security is TLS, mTLS and the API key, under the SDK's names.
	Security config.TemporalSecurity
}

// FromConfig are the Options of the configured Temporal.
func FromConfig(cfg *config.Config, logger *slog.Logger) Options {
	return Options{HostPort: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace, DialTimeout: cfg.DialTimeout, Logger: logger, Security: cfg.TemporalSecurity}
}

// ClientOptions are the SDK's client options of o: the Temporal SDK's own
// environment configuration (package envconfig) reads the settings under
// the names it gives them (TEMPORAL_ADDRESS, TEMPORAL_API_KEY,
// TEMPORAL_TLS, TEMPORAL_TLS_CLIENT_CERT_PATH, …) and builds the TLS
// configuration and the API key credentials, so shopstream means by each
// name what every Temporal tool means. The names are looked up in o, which
// the command line filled from flags, the environment and .env, not in the
// process environment, and no TOML profile is read.
func ClientOptions(o Options) (client.Options, error) {
	env := envLookup{}
	set := func(k, v string) {
		if v != "" {
			env[k] = v
		}
	}
	set("TEMPORAL_ADDRESS", o.HostPort)
	set("TEMPORAL_NAMESPACE", o.Namespace)
	set("TEMPORAL_API_KEY", o.Security.APIKey)
	set("TEMPORAL_TLS", o.Security.TLS)
	set("TEMPORAL_TLS_CLIENT_CERT_PATH", o.Security.ClientCertPath)
	set("TEMPORAL_TLS_CLIENT_KEY_PATH", o.Security.ClientKeyPath)
	set("TEMPORAL_TLS_SERVER_CA_CERT_PATH", o.Security.ServerCACertPath)
	set("TEMPORAL_TLS_SERVER_NAME", o.Security.ServerName)
	prof, err := envconfig.LoadClientConfigProfile(envconfig.LoadClientConfigProfileOptions{DisableFile: true, EnvLookup: env})
	if err != nil {
		return client.Options{}, fmt.Errorf("read the Temporal client settings: %w", err)
	}
	opts, err := prof.ToClientOptions(envconfig.ToClientOptionsRequest{})
	if err != nil {
		return client.Options{}, fmt.Errorf("build the Temporal client's TLS from TEMPORAL_TLS_*: %w", err)
	}
	return opts, nil
}

// envLookup is envconfig's view of the settings: a map, not os.Environ.
type envLookup map[string]string

func (e envLookup) Environ() []string {
	out := make([]string, 0, len(e))
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

func (e envLookup) LookupEnv(k string) (string, bool) {
	v, ok := e[k]
	return v, ok
}

// describe says how the client connects, for errors: never the key.
func (o Options) describe(opts client.Options) string {
	var parts []string
	if opts.ConnectionOptions.TLS != nil {
		parts = append(parts, "TLS")
		if len(opts.ConnectionOptions.TLS.Certificates) > 0 {
			parts = append(parts, "client certificate "+o.Security.ClientCertPath)
		}
	} else {
		parts = append(parts, "plaintext")
	}
	if o.Security.APIKey != "" {
		parts = append(parts, "API key")
	}
	return strings.Join(parts, ", ")
}

// Dial dials the Temporal frontend and checks that it answers within the
// dial timeout.
func Dial(ctx context.Context, o Options) (client.Client, error) {
	if o.Namespace == "" {
		o.Namespace = client.DefaultNamespace
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	copts, err := ClientOptions(o)
	if err != nil {
		return nil, err
	}
	copts.Logger = sdklog.NewStructuredLogger(o.Logger)
	copts.MetricsHandler = o.MetricsHandler
	dctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	c, err := client.DialContext(dctx, copts)
	if err == nil {
		_, err = c.CheckHealth(dctx, &client.CheckHealthRequest{})
		if err != nil {
			c.Close()
		}
	}
	if err != nil {
		return nil, explain(o, copts, err)
	}
	return c, nil
}

// explain says why the dial failed: TLS and credential problems get what
// to check; anything else is the unreachable-Temporal message.
func explain(o Options, copts client.Options, err error) error {
	how := o.describe(copts)
	msg := err.Error()
	switch {
	case status.Code(err) == codes.Unauthenticated || status.Code(err) == codes.PermissionDenied:
		return fmt.Errorf("temporal at %s (namespace %s, %s) refused the credentials (%s): check TEMPORAL_API_KEY, or the client certificate (TEMPORAL_TLS_CLIENT_CERT_PATH) and that the namespace accepts it",
			o.HostPort, o.Namespace, how, status.Convert(err).Message())
	case strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:") || strings.Contains(msg, "authentication handshake failed"),
		// A server that wants a client certificate may close the
		// connection before its alert arrives.
		copts.ConnectionOptions.TLS != nil && (strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset")):
		return fmt.Errorf("cannot connect to Temporal at %s (namespace %s, %s): the TLS handshake failed (%v): check TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME and the client certificate",
			o.HostPort, o.Namespace, how, err)
	case copts.ConnectionOptions.TLS == nil && strings.Contains(msg, "server preface: EOF"):
		return fmt.Errorf("cannot connect to Temporal at %s (namespace %s, %s): it closed the connection before it spoke gRPC: it probably expects TLS: set TEMPORAL_TLS=true (and TEMPORAL_TLS_SERVER_CA_CERT_PATH for a private CA)",
			o.HostPort, o.Namespace, how)
	}
	return fmt.Errorf("cannot reach Temporal at %s (namespace %s) within %s, connecting over %s (%v): start the embedded stack with `shopstream dev`, or set TEMPORAL_ADDRESS / --temporal-address",
		o.HostPort, o.Namespace, o.DialTimeout, how, err)
}
