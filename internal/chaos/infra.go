package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/clients/temporalclient"
	"github.com/shopstream/shopstream/internal/imageserver"
	"github.com/shopstream/shopstream/internal/pgcluster"
	"github.com/shopstream/shopstream/internal/records"
)

// Brokers is the size of the harness's Kafka cluster.
const Brokers = 3

// TxnTimeoutCap is the longest transaction timeout the harness's brokers
// grant: every producer that asks for more gets this, so that the
// transaction of a process that was killed or stopped is aborted by the
// coordinator within a schedule, as a real cluster's would be within its
// own (longer) timeout.
const TxnTimeoutCap = 10 * time.Second

// HarnessClientID is the client id of the harness's own Kafka clients (its
// checker, searches and admin requests): a fault aimed at a component
// never reaches them.
const HarnessClientID = "shopstream-chaos"

// Infra is what every schedule shares, started once: the shopstream binary,
// a 3-broker kfake cluster in this process (so that faults can be set on
// its requests), a schema registry, PostgreSQL, the Temporal dev server, and
// a server of the images the emulated products name.
type Infra struct {
	Bin   string
	Dir   string
	Kafka *kfake.Cluster
	// Brokers are the cluster's addresses, for the processes.
	Brokers  []string
	Registry *srfake.Registry
	Clients  *clients.Kafka
	Admin    *kadm.Client
	Serde    *records.Serde
	// ImageBase is the base URL of the image server.
	ImageBase string

	// restartPG and restartTemporal serialize restarts: two faults of a
	// schedule may restart the same service at overlapping times.
	restartPG, restartTemporal sync.Mutex
	temporalLog                *os.File // nil when InfraOptions.Log was given
	pgMu                       sync.Mutex
	pg                         *pgcluster.Cluster
	pgDir                      string
	pgPort                     int
	temporal                   *environment.Stack
	tOpts                      environment.Options
	tc                         client.Client
	images                     *http.Server
	faults                     *requestFaults
	closers                    []io.Closer
	client                     *kgo.Client
	epochWriter                *kgo.Client // writes the aborted batches of moveLeaders
	moveMu                     sync.Mutex
}

// InfraOptions say where the binary and the Temporal CLI are.
type InfraOptions struct {
	// Bin is the shopstream binary; empty builds one into Dir.
	Bin string
	// ModuleDir is the module to build it from.
	ModuleDir string
	// TemporalCLI is the Temporal CLI (environment.FindTemporalCLI's rules).
	TemporalCLI string
	// Dir holds everything the run writes; it must be reachable by the
	// postgres user when this runs as root.
	Dir string
	// Log takes the Temporal dev server's output; nil writes it to
	// temporal/temporal.log under Dir.
	Log io.Writer
}

// StartInfra starts what every schedule shares; Close stops it.
func StartInfra(ctx context.Context, o InfraOptions) (_ *Infra, err error) {
	in := &Infra{Dir: o.Dir, Bin: o.Bin}
	defer func() {
		if err != nil {
			in.Close()
		}
	}()
	if in.Bin == "" {
		in.Bin = filepath.Join(o.Dir, "shopstream")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", in.Bin, "./cli")
		cmd.Dir = o.ModuleDir
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build shopstream: %v\n%s", err, out)
		}
	}

	in.faults = newRequestFaults()
	klog, err := os.Create(filepath.Join(o.Dir, "kfake.log"))
	if err != nil {
		return nil, err
	}
	in.closers = append(in.closers, klog)
	in.Kafka, err = kfake.NewCluster(
		kfake.WithLogger(kfake.BasicLogger(klog, kfake.LogLevelWarn)),
		kfake.NumBrokers(Brokers),
		// Every connection passes the schedule's request faults (wire.go).
		kfake.ListenFn(in.faults.listen),
		kfake.DefaultNumPartitions(3),
		kfake.GroupMinSessionTimeout(GroupSessionTimeout),
		// No compaction during a run: the checker reads every filter
		// version the StreamFilter workflow published.
		kfake.BrokerConfigs(map[string]string{"log.cleaner.backoff.ms": "604800000"}),
	)
	if err != nil {
		return nil, fmt.Errorf("start kfake: %w", err)
	}
	in.Brokers = in.Kafka.ListenAddrs()
	in.faults.install(in.Kafka)
	in.Registry = srfake.New()
	if in.Clients, err = clients.NewKafka(clients.KafkaOptions{Brokers: in.Brokers, DialTimeout: 3 * time.Second}); err != nil {
		return nil, err
	}
	in.Clients = in.Clients.With(kgo.ClientID(HarnessClientID))
	cl, err := in.Clients.NewClient()
	if err != nil {
		return nil, err
	}
	in.client = cl
	in.Admin = kadm.NewClient(cl)
	if in.epochWriter, err = in.Clients.NewClient(kgo.TransactionalID("chaos-epoch-marker"), kgo.RecordPartitioner(kgo.ManualPartitioner())); err != nil {
		return nil, err
	}
	if in.Serde, err = clients.NewSerde(in.Registry.URL()); err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the image server: %w", err)
	}
	in.images = &http.Server{Handler: imageserver.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = in.images.Serve(ln) }()
	in.ImageBase = "http://" + ln.Addr().String() + "/images"

	in.pgDir = filepath.Join(o.Dir, "pg")
	if err := in.startPostgres(ctx); err != nil {
		return nil, err
	}

	in.tOpts = environment.Options{StartTemporal: true, DataDir: filepath.Join(o.Dir, "temporal"), TemporalCLI: o.TemporalCLI, Log: o.Log}
	if err := os.MkdirAll(in.tOpts.DataDir, 0o755); err != nil {
		return nil, err
	}
	if in.tOpts.Log == nil {
		if in.temporalLog, err = os.Create(filepath.Join(in.tOpts.DataDir, "temporal.log")); err != nil {
			return nil, err
		}
		in.tOpts.Log = in.temporalLog
	}
	// The first start picks free ports, and another test's process can
	// take one before the dev server binds it (it then exits at once, as
	// it did once in CI): each retry picks them anew.
	if err := restartWithin(func() error { return in.startTemporal(ctx) }); err != nil {
		return nil, fmt.Errorf("start Temporal: %w", err)
	}
	return in, nil
}

func (in *Infra) startPostgres(ctx context.Context) error {
	in.pgMu.Lock()
	defer in.pgMu.Unlock()
	c, err := pgcluster.Start(ctx, pgcluster.Options{Dir: in.pgDir, Port: in.pgPort, Fast: true})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	in.pg, in.pgPort = c, c.Port
	return nil
}

// RestartPostgres stops PostgreSQL, waits down, and starts it again on the
// same port and data.
func (in *Infra) RestartPostgres(ctx context.Context, down time.Duration) error {
	in.restartPG.Lock()
	defer in.restartPG.Unlock()
	in.pgMu.Lock()
	pg := in.pg
	in.pgMu.Unlock()
	if err := pg.Stop(); err != nil {
		return fmt.Errorf("stop PostgreSQL: %w", err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(down):
	}
	return restartWithin(func() error { return in.startPostgres(context.WithoutCancel(ctx)) })
}

// Database creates a database of its own for a schedule and returns its DSN.
func (in *Infra) Database(ctx context.Context, name string) (string, error) {
	in.pgMu.Lock()
	admin := in.pg.DSNFor("postgres")
	dsn := in.pg.DSNFor(name)
	in.pgMu.Unlock()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return dsn, nil
}

func (in *Infra) startTemporal(ctx context.Context) error {
	s, err := environment.Start(ctx, in.tOpts)
	if err != nil {
		return err
	}
	in.temporal = s
	// The restart reuses the frontend port the first start picked, which
	// the processes were given; the Web UI's, which nobody here uses, is
	// picked anew each time (seed 15: another process had taken it while
	// Temporal was down, and the lane's Temporal never came back).
	in.tOpts.TemporalPort = port(s.TemporalAddress)
	if in.tc == nil {
		in.tc, err = temporalclient.Dial(ctx, temporalclient.Options{HostPort: s.TemporalAddress, Namespace: "default"})
		if err != nil {
			return err
		}
	}
	return nil
}

// RestartTemporal stops the Temporal dev server, waits down, and starts it
// again on the same ports and database.
func (in *Infra) RestartTemporal(ctx context.Context, down time.Duration) error {
	in.restartTemporal.Lock()
	defer in.restartTemporal.Unlock()
	if err := in.temporal.Close(); err != nil {
		return fmt.Errorf("stop Temporal: %w", err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(down):
	}
	return restartWithin(func() error { return in.startTemporal(context.WithoutCancel(ctx)) })
}

// restartWithin starts a service again, retrying for a few seconds: its
// port can be held for a moment by a connection another process made
// from it while the service was down.
func restartWithin(start func() error) error {
	var err error
	for range 10 {
		if err = start(); err == nil {
			return nil
		}
		time.Sleep(time.Second)
	}
	return err
}

// moveLeaders moves partition p of topics to broker (every partition of
// every topic to a random broker when p < 0), then writes, in a
// transaction it aborts, one record to each moved partition of topics (the
// ones consumers read): nobody reads it, but it starts the new leader
// epoch.
//
// kfake knows a partition's leader epochs only from the batches in it.
// Until a batch of the new epoch is written, it answers a consumer that
// asks where its last epoch ended (OffsetForLeaderEpoch, once it sees the
// new leader) with "undefined", and franz-go then takes the log for
// truncated and starts the partition over from its reset offset, reading
// everything twice. A Kafka leader records the new epoch's start when it
// becomes leader, so that never happens there. Those requests wait while
// the move and the write happen.
func (in *Infra) moveLeaders(ctx context.Context, p, broker int32, topics ...string) error {
	in.moveMu.Lock()
	defer in.moveMu.Unlock()
	release := in.faults.hold()
	defer release()
	if p < 0 {
		in.Kafka.ShufflePartitionLeaders()
	} else {
		for _, t := range topics {
			if err := in.Kafka.MoveTopicPartition(t, p, broker); err != nil {
				return err
			}
		}
	}
	details, err := in.Admin.ListTopics(ctx, topics...)
	if err != nil {
		return err
	}
	var recs []*kgo.Record
	for _, d := range details {
		for part := range d.Partitions {
			if p < 0 || part == p {
				recs = append(recs, &kgo.Record{Topic: d.Topic, Partition: part, Key: []byte("chaos-epoch-marker"), Value: []byte("aborted")})
			}
		}
	}
	if err := in.epochWriter.BeginTransaction(); err != nil {
		return err
	}
	err = in.epochWriter.ProduceSync(ctx, recs...).FirstErr()
	if eerr := in.epochWriter.EndTransaction(ctx, kgo.TryAbort); err == nil {
		err = eerr
	}
	return err
}

// txnTimeouts counts, for each prefix, the transactions of ids starting
// with it that the brokers aborted because they ran past their timeout
// (kfake logs each), reading the log once.
func (in *Infra) txnTimeouts(prefixes ...string) []int {
	out := make([]int, len(prefixes))
	b, err := os.ReadFile(filepath.Join(in.Dir, "kfake.log"))
	if err != nil {
		return out
	}
	log := string(b)
	for i, p := range prefixes {
		out[i] = strings.Count(log, "txn timeout abort: txn_id="+p)
	}
	return out
}

// TemporalAddress is the dev server's frontend.
func (in *Infra) TemporalAddress() string { return in.temporal.TemporalAddress }

// Temporal is a client of the dev server.
func (in *Infra) Temporal() client.Client { return in.tc }

// Close stops everything.
func (in *Infra) Close() {
	var errs []error
	if in.tc != nil {
		in.tc.Close()
	}
	if in.temporal != nil {
		errs = append(errs, in.temporal.Close())
	}
	if in.temporalLog != nil {
		errs = append(errs, in.temporalLog.Close())
	}
	if in.pg != nil {
		errs = append(errs, in.pg.Stop())
	}
	if in.images != nil {
		errs = append(errs, in.images.Close())
	}
	if in.Registry != nil {
		in.Registry.Close()
	}
	if in.epochWriter != nil {
		in.epochWriter.Close()
	}
	if in.client != nil {
		in.client.Close()
	}
	if in.Kafka != nil {
		in.Kafka.Close()
	}
	for _, c := range in.closers {
		errs = append(errs, c.Close())
	}
	_ = errors.Join(errs...)
}

func port(addr string) int {
	i := strings.LastIndex(addr, ":")
	p, _ := strconv.Atoi(addr[i+1:])
	return p
}
