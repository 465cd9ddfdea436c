package environment

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/hanging"
)

// Fixed ports of the embedded stack; every command's defaults point here.
const (
	KafkaPort      = 9092
	RegistryPort   = 8081
	TemporalPort   = 7233
	TemporalUIPort = 8233
)

// Options says which parts of the stack to start and where. A zero port picks
// a free one (tests); an empty DataDir keeps everything in memory.
type Options struct {
	DataDir string

	StartKafka    bool
	KafkaPort     int
	KafkaBrokers  []string // used when StartKafka is false
	StartRegistry bool
	RegistryPort  int
	RegistryURL   string // used when StartRegistry is false

	StartTemporal   bool
	TemporalPort    int
	TemporalUIPort  int
	TemporalAddress string // used when StartTemporal is false
	TemporalUIURL   string
	TemporalCLI     string
	// UntunedTemporal leaves the dev server's dynamic config at its defaults
	// (for measuring what the tuning buys).
	UntunedTemporal bool

	// Secure, when set, runs Kafka with TLS and SASL/SCRAM-SHA-512 with
	// ACLs on, and the registry behind TLS and basic auth.
	Secure *Secure

	// Log receives the Temporal dev server's output.
	Log io.Writer
	// ReadyTimeout bounds the wait for each part to answer.
	ReadyTimeout time.Duration
}

// Secure is how the secured embedded stack listens and whom it lets in.
type Secure struct {
	// TLS is the listeners' configuration (a certificate for 127.0.0.1).
	TLS *tls.Config
	// Admin is the Kafka superuser, Users the other SCRAM-SHA-512 users,
	// user -> password; ACLs decide what Users may do.
	Admin, AdminPassword string
	Users                map[string]string
	// AdminClient is how the stack's own readiness check connects to
	// Kafka: SASL_SSL as the admin, trusting the stack's CA.
	AdminClient config.KafkaSecurity
	// Registry basic auth.
	RegistryUser, RegistryPassword string
}

// Stack is a running embedded stack, or the external parts it stands for.
type Stack struct {
	KafkaBrokers    []string
	RegistryURL     string
	TemporalAddress string
	TemporalUIURL   string
	// Kafka is the in-process cluster, nil when an external Kafka is used.
	Kafka *kfake.Cluster
	// KafkaRecovery says what Start repaired because the embedded Kafka
	// had not been stopped cleanly (a crash, a SIGKILL); nil when it had.
	KafkaRecovery *hanging.Recovery
	// Started says how long each part took to answer.
	Started map[string]time.Duration

	registry *http.Server
	temporal *temporalServer
	// dataDir is where the embedded Kafka keeps its state ("" in memory).
	dataDir string
}

// dataFile is where a component keeps its state under DataDir; "" (keep
// it in memory) without one.
func (o Options) dataFile(name string) string {
	if o.DataDir == "" {
		return ""
	}
	return filepath.Join(o.DataDir, name)
}

// Start starts the parts Options asks for and waits until each answers. On an
// error, whatever did start is stopped again.
func Start(ctx context.Context, o Options) (_ *Stack, err error) {
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	s := &Stack{Started: map[string]time.Duration{},
		KafkaBrokers: o.KafkaBrokers, RegistryURL: o.RegistryURL,
		TemporalAddress: o.TemporalAddress, TemporalUIURL: o.TemporalUIURL}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// Find every port and the CLI before starting anything, so a taken port
	// or a missing binary fails fast and names the culprit.
	var temporalCLI string
	httpPort := 0 // Temporal's HTTP API; nothing of ours uses it, so any free port
	if o.StartTemporal {
		if temporalCLI, err = FindTemporalCLI(o.TemporalCLI); err != nil {
			return nil, err
		}
	}
	for _, p := range []struct {
		on   bool
		port *int
		what string
	}{
		{o.StartKafka, &o.KafkaPort, "Kafka (kfake)"},
		{o.StartRegistry, &o.RegistryPort, "the schema registry"},
		{o.StartTemporal, &o.TemporalPort, "Temporal"},
		{o.StartTemporal, &o.TemporalUIPort, "the Temporal Web UI"},
		{o.StartTemporal, &httpPort, "Temporal's HTTP API"},
	} {
		if !p.on {
			continue
		}
		if *p.port, err = checkPort(*p.port, p.what); err != nil {
			return nil, err
		}
	}

	if o.StartKafka {
		t0 := time.Now()
		var adminClient config.KafkaSecurity
		if o.Secure != nil {
			adminClient = o.Secure.AdminClient
		}
		opts := func(port int) []kfake.Opt {
			opts := []kfake.Opt{
				kfake.Ports(port),
				kfake.DefaultNumPartitions(3),
				// Compact the filter topic within seconds, not kfake's default hour.
				kfake.BrokerConfigs(map[string]string{"log.cleaner.backoff.ms": "30000"}),
			}
			if o.DataDir != "" {
				opts = append(opts, kfake.DataDir(filepath.Join(o.DataDir, "kafka")))
			}
			if sec := o.Secure; sec != nil {
				opts = append(opts, kfake.TLS(sec.TLS), kfake.EnableSASL(), kfake.EnableACLs(),
					kfake.Superuser(config.MechanismScram512, sec.Admin, sec.AdminPassword))
				for _, u := range slices.Sorted(maps.Keys(sec.Users)) {
					opts = append(opts, kfake.User(config.MechanismScram512, u, sec.Users[u]))
				}
			}
			return opts
		}
		if o.DataDir != "" && StoppedUncleanly(o.DataDir) {
			rec, err := recoverKafka(ctx, opts(0), adminClient)
			if err != nil {
				return nil, err
			}
			rec.Took = time.Since(t0)
			s.KafkaRecovery = &rec
		}
		if o.DataDir != "" {
			if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
				return nil, fmt.Errorf("create data dir %s: %w", o.DataDir, err)
			}
			if err := writeKafkaState(o.DataDir, "running"); err != nil {
				return nil, err
			}
			s.dataDir = o.DataDir
		}
		if s.Kafka, err = kfake.NewCluster(opts(o.KafkaPort)...); err != nil {
			return nil, fmt.Errorf("start Kafka (kfake) on 127.0.0.1:%d: %w", o.KafkaPort, err)
		}
		s.KafkaBrokers = s.Kafka.ListenAddrs()
		if err = pingKafka(ctx, s.KafkaBrokers, adminClient); err != nil {
			return nil, err
		}
		s.Started["kafka"] = time.Since(t0)
	}

	if o.StartRegistry {
		t0 := time.Now()
		reg, err := newPersistentRegistry(o.dataFile("schema-registry.json"))
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(o.RegistryPort)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("start the schema registry on %s: %w", addr, err)
		}
		var handler http.Handler = reg
		s.RegistryURL = "http://" + addr
		if sec := o.Secure; sec != nil {
			handler = basicAuth(sec.RegistryUser, sec.RegistryPassword, reg)
			ln = tls.NewListener(ln, sec.TLS)
			s.RegistryURL = "https://" + addr
		}
		s.registry = &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = s.registry.Serve(ln) }()
		s.Started["schema registry"] = time.Since(t0)
	}

	if o.StartTemporal {
		t0 := time.Now()
		s.temporal, err = startTemporal(temporalOptions{
			cli: temporalCLI, port: o.TemporalPort, uiPort: o.TemporalUIPort, httpPort: httpPort,
			dbFile: o.dataFile("temporal.db"), tuned: !o.UntunedTemporal, log: o.Log,
		})
		if err != nil {
			return nil, err
		}
		s.TemporalAddress = "127.0.0.1:" + strconv.Itoa(o.TemporalPort)
		s.TemporalUIURL = "http://127.0.0.1:" + strconv.Itoa(o.TemporalUIPort)
		rctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
		defer cancel()
		if err = s.temporal.waitReady(rctx, s.TemporalAddress, s.TemporalUIURL); err != nil {
			return nil, err
		}
		s.Started["temporal"] = time.Since(t0)
	}
	return s, nil
}

// Close stops what Start started, the Temporal child process included,
// within about ten seconds.
func (s *Stack) Close() error {
	var errs []error
	if s.temporal != nil {
		errs = append(errs, s.temporal.stop(8*time.Second))
		s.temporal = nil
	}
	if s.registry != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		errs = append(errs, s.registry.Shutdown(ctx))
		cancel()
		s.registry = nil
	}
	if s.Kafka != nil {
		s.Kafka.Close()
		s.Kafka = nil
		if s.dataDir != "" {
			errs = append(errs, writeKafkaState(s.dataDir, "stopped"))
		}
	}
	return errors.Join(errs...)
}

// kafkaStateFile, in the data directory, says "running" while the
// embedded Kafka runs and "stopped" once it has closed cleanly.
const kafkaStateFile = "kafka.state"

// StoppedUncleanly says whether the embedded Kafka kept in dataDir was
// last stopped without closing (a crash, a SIGKILL): its state file does
// not say "stopped". A directory kept by a shopstream from before the
// state file is taken as stopped uncleanly, which costs one check.
func StoppedUncleanly(dataDir string) bool {
	if _, err := os.Stat(filepath.Join(dataDir, "kafka", "meta.json")); err != nil {
		return false // no Kafka kept there yet
	}
	b, err := os.ReadFile(filepath.Join(dataDir, kafkaStateFile))
	return err != nil || strings.TrimSpace(string(b)) != "stopped"
}

func writeKafkaState(dataDir, state string) error {
	if err := os.WriteFile(filepath.Join(dataDir, kafkaStateFile), []byte(state+"\n"), 0o644); err != nil {
		return fmt.Errorf("record the embedded Kafka's state: %w", err)
	}
	return nil
}

// recoverKafka starts the cluster on a free port, where no producer can
// reach it, aborts the transactions the crash left open (package hanging
// says why kfake needs that), and closes it cleanly again.
func recoverKafka(ctx context.Context, opts []kfake.Opt, sec config.KafkaSecurity) (hanging.Recovery, error) {
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return hanging.Recovery{}, fmt.Errorf("start Kafka (kfake) to recover it from an unclean stop: %w", err)
	}
	defer c.Close()
	k, err := clients.NewKafka(clients.KafkaOptions{Brokers: c.ListenAddrs(), Security: sec})
	if err != nil {
		return hanging.Recovery{}, err
	}
	cl, err := k.NewClient()
	if err != nil {
		return hanging.Recovery{}, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	rec, err := hanging.Recover(ctx, kadm.NewClient(cl), k)
	if err != nil {
		return rec, fmt.Errorf("recover Kafka (kfake) from an unclean stop: %w", err)
	}
	return rec, nil
}

// checkPort returns port, or a free port when port is 0, and names the part
// that wanted it when it is taken.
func checkPort(port int, what string) (int, error) {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("port %s for %s is taken (%v): stop what listens there (is another `shopstream dev` running?), or point shopstream at that service instead of starting one", addr, what, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func pingKafka(ctx context.Context, brokers []string, sec config.KafkaSecurity) error {
	k, err := clients.NewKafka(clients.KafkaOptions{Brokers: brokers, Security: sec})
	if err != nil {
		return err
	}
	cl, err := k.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka on %v does not answer: %w", brokers, err)
	}
	return nil
}

// basicAuth lets a request through to next only with the registry's user
// and password, as a secured Confluent registry does.
func basicAuth(user, pass string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(pass)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="schema-registry"`)
			w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error_code":401,"message":"Unauthorized: give SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD"}`)
			return
		}
		next.ServeHTTP(w, r)
	})
}
