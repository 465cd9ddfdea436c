package process

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/worker"

	"github.com/shopstream/shopstream/activities"
	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/acls"
	"github.com/shopstream/shopstream/internal/apiauth"
	"github.com/shopstream/shopstream/internal/blobstore"
	"github.com/shopstream/shopstream/internal/catalog"
	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/collector"
	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/exitcode"
	"github.com/shopstream/shopstream/internal/imagefetch"
	"github.com/shopstream/shopstream/internal/kafkametrics"
	"github.com/shopstream/shopstream/internal/productapi"
	"github.com/shopstream/shopstream/internal/sink"
	"github.com/shopstream/shopstream/internal/supervise"
	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/streamer"
	"github.com/shopstream/shopstream/streamer/recommender"
	"github.com/shopstream/shopstream/workers"
)

// Activities builds every activity family over the process's clients.
func (e *Env) Activities() (workers.Activities, error) {
	// The worker's activities run as its principal and read their
	// credentials from this process, never from workflow input.
	ctx, cancel := context.WithTimeout(context.Background(), e.Config.DialTimeout)
	defer cancel()
	cl, adm, err := e.clientFor(ctx, acls.Worker)
	if err != nil {
		return workers.Activities{}, err
	}
	k := e.KafkaFor(acls.Worker)
	emulate, err := activities.NewEmulate(k, adm, e.Serde, e.Metrics)
	if err != nil {
		e.Logger.Error("emulation activities not registered", "err", err)
	}
	connectors, err := environment.ConnectorConfigs()
	if err != nil {
		return workers.Activities{}, err
	}
	ops, err := workers.NewOperations(k, adm, e.Serde, e.Config.Topics, e.Metrics)
	if err != nil {
		return workers.Activities{}, err
	}
	return workers.Activities{
		Emulate: emulate,
		Bootstrap: &activities.Bootstrap{
			Kafka:      cl,
			Registry:   e.Serde.Registry(),
			Schemas:    e.Serde.Schemas(),
			HTTP:       clients.NewHTTPClient(nil, 30*time.Second),
			Connectors: connectors,
			ConnectURL: e.Config.KafkaConnectURL,
			KsqlURL:    e.Config.KsqlDBURL,
		},
		Filter:   &activities.Filter{Kafka: k, Serde: e.Serde, Topic: e.Config.Topics.Filter},
		Backfill: ops.Backfill,
		Replay:   ops.Replay,
	}, nil
}

// Worker is the Temporal worker with every workflow and activity, on the
// configured task queue; running activities get stopTimeout to finish when
// it stops (the SDK's default when zero).
func (e *Env) Worker(stopTimeout time.Duration) (*workers.Worker, error) {
	if _, err := e.checkAccess(acls.Worker); err != nil {
		return nil, err
	}
	acts, err := e.Activities()
	if err != nil {
		return nil, err
	}
	return workers.New(e.Temporal, e.Config.TaskQueue, acts, worker.Options{WorkerStopTimeout: stopTimeout}), nil
}

// RegisterKafkaView exports, on the process's /metrics, what Kafka says
// about shopstream's topics at each scrape: partition offsets and every
// group's lag. The worker (and dev, which hosts one) exports it: the
// observer of the consumers is not one of them.
func (e *Env) RegisterKafkaView() error {
	ctx, cancel := context.WithTimeout(context.Background(), e.Config.DialTimeout)
	defer cancel()
	_, adm, err := e.clientFor(ctx, acls.Worker)
	if err != nil {
		return err
	}
	c, err := kafkametrics.New(kafkametrics.Options{
		Admin: adm, Kafka: e.KafkaFor(acls.Worker), Topics: kafkametrics.TopicRoles(e.Config.Topics), Log: e.Logger.With("component", "kafka-metrics"),
		SkipGroup: activities.IsBatchMarkerGroup,
	})
	if err != nil {
		return err
	}
	return e.Metrics.Register(c)
}

// deps are what every component is built with, over the process's clients
// (its principal's Kafka) and metrics; its logs say which component (the
// sink says so itself).
func (e *Env) deps(name string) component.Deps {
	log := e.Logger
	if name != acls.Sink {
		log = log.With("component", name)
	}
	return component.Deps{Kafka: e.KafkaFor(name), Topics: e.Config.Topics, Serde: e.Serde, Registerer: e.Metrics, Logger: log}
}

// StreamerSettings are the streamer process's own settings.
type StreamerSettings struct {
	Group           string
	InstanceID      string
	TransactionalID string
	CaseSensitive   bool
	MaxBatch        int
	// FetchMaxBytes and FetchMaxPartitionBytes: streamer.Options'.
	FetchMaxBytes, FetchMaxPartitionBytes int
	// Recommender runs the built-in recommender in the same process, with
	// RecommenderMaxUsers (recommender.Options.MaxUsers; 0: the default).
	Recommender         bool
	RecommenderMaxUsers int
}

// Validate says what is wrong with s, naming the flag, as a usage error.
func (s StreamerSettings) Validate() error {
	switch {
	case s.MaxBatch < 1 || s.MaxBatch > 1_000_000:
		return exitcode.Usagef("--max-batch %d: want 1 to 1000000", s.MaxBatch)
	case strings.ContainsAny(s.InstanceID, " \t\n/"):
		return exitcode.Usagef("--instance-id %q: use letters, digits, '-', '_' or '.'", s.InstanceID)
	case strings.ContainsAny(s.TransactionalID, " \t\n"):
		return exitcode.Usagef("--transactional-id %q: use no white space", s.TransactionalID)
	case strings.TrimSpace(s.Group) == "":
		return exitcode.Usagef("--group is empty: give the consumer group, e.g. %s", streamer.DefaultGroup)
	case s.FetchMaxBytes < streamer.MinFetchBytes || s.FetchMaxBytes > streamer.MaxFetchBytes:
		return exitcode.Usagef("--fetch-max-bytes %d: want %d to %d (default %d)", s.FetchMaxBytes, streamer.MinFetchBytes, streamer.MaxFetchBytes, streamer.DefaultFetchMaxBytes)
	case s.FetchMaxPartitionBytes < streamer.MinFetchBytes || s.FetchMaxPartitionBytes > s.FetchMaxBytes:
		return exitcode.Usagef("--fetch-max-partition-bytes %d: want %d to --fetch-max-bytes (%d)", s.FetchMaxPartitionBytes, streamer.MinFetchBytes, s.FetchMaxBytes)
	}
	return nil
}

// AddStreamer adds the streamer process's components to g: the filter
// ("streamer") and, when s asks for it, the built-in recommender
// ("recommender"), both over the process's clients and metrics.
func (e *Env) AddStreamer(g *supervise.Group, s StreamerSettings) error {
	if _, err := e.checkAccess(acls.Streamer); err != nil {
		return err
	}
	st, err := streamer.New(streamer.Options{Deps: e.deps("streamer"),
		Group: s.Group, InstanceID: s.InstanceID, TransactionalID: s.TransactionalID, CaseSensitive: s.CaseSensitive, MaxBatch: s.MaxBatch,
		FetchMaxBytes: int32(s.FetchMaxBytes), FetchMaxPartitionBytes: int32(s.FetchMaxPartitionBytes),
	})
	if err != nil {
		return err
	}
	if err := g.Add("streamer", e.Guard(acls.Streamer, st)); err != nil {
		return err
	}
	if !s.Recommender {
		return nil
	}
	rec, err := e.Recommender(RecommenderSettings{
		Group: recommender.DefaultGroup,
		// One process, one id: unique when several instances share a host.
		InstanceID: st.InstanceID(),
		TopicWait:  2 * time.Minute, // `shopstream dev` bootstraps after its components start
		MaxUsers:   s.RecommenderMaxUsers,
	})
	if err != nil {
		return err
	}
	return g.Add("recommender", e.Guard(acls.Recommender, rec))
}

// RecommenderSettings are the recommender's own settings.
type RecommenderSettings struct {
	Group      string
	InstanceID string
	// TopicWait is how long to wait for `shopstream bootstrap` to create
	// missing topics.
	TopicWait time.Duration
	// MaxUsers is recommender.Options.MaxUsers (0: the default).
	MaxUsers int
	// OnCaughtUp, when set, hears how many products the table holds once it
	// caught up.
	OnCaughtUp func(products int)
}

// Recommender builds the built-in recommender over the process's clients.
func (e *Env) Recommender(s RecommenderSettings) (*recommender.Recommender, error) {
	if _, err := e.checkAccess(acls.Recommender); err != nil {
		return nil, err
	}
	return recommender.New(recommender.Options{Deps: e.deps("recommender"),
		Group: s.Group, InstanceID: s.InstanceID, TopicWait: s.TopicWait, OnCaughtUp: s.OnCaughtUp, MaxUsers: s.MaxUsers,
	})
}

// SinkSettings are the sink's own settings.
type SinkSettings struct {
	Group     string
	BatchSize int
}

// Sink opens the process's database (applying its migrations) and builds
// the sink over it.
func (e *Env) Sink(ctx context.Context, s SinkSettings) (*sink.Sink, error) {
	store, err := e.Database(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := e.checkAccess(acls.Sink); err != nil {
		return nil, err
	}
	return sink.New(sink.Options{Deps: e.deps(acls.Sink), Group: s.Group, Store: store, BatchSize: s.BatchSize})
}

// CollectorSettings are the image collector's own settings.
type CollectorSettings struct {
	Group           string
	TransactionalID string
	Fetch           imagefetch.Options
	// ParkAfter is collector.Options.BatchWait: 0 the default, negative
	// parks nothing.
	ParkAfter time.Duration
	// MaxInFlight is collector.Options.MaxInFlight (0: the default).
	MaxInFlight int
}

// Validate says which setting is wrong and what it takes, naming the flag
// that sets it (exit code 2).
func (s CollectorSettings) Validate() error {
	switch {
	case s.Group == "":
		return exitcode.Usagef("--collector-group is empty")
	case strings.ContainsAny(s.TransactionalID, " \t\n"):
		return exitcode.Usagef("--collector-transactional-id %q: use no white space", s.TransactionalID)
	case s.Fetch.Timeout <= 0:
		return exitcode.Usagef("--fetch-timeout %s: want a positive duration such as 10s", s.Fetch.Timeout)
	case s.Fetch.Attempts < 1 || s.Fetch.Attempts > 20:
		return exitcode.Usagef("--fetch-attempts %d: want 1 to 20", s.Fetch.Attempts)
	case s.Fetch.MaxBytes < 1:
		return exitcode.Usagef("--max-image-bytes %d: want a positive size", s.Fetch.MaxBytes)
	case s.Fetch.Concurrency < 1 || s.Fetch.Concurrency > 1024:
		return exitcode.Usagef("--fetch-concurrency %d: want 1 to 1024", s.Fetch.Concurrency)
	case s.Fetch.PerHost < 1 || s.Fetch.PerHost > s.Fetch.Concurrency:
		return exitcode.Usagef("--fetch-per-host %d: want 1 to --fetch-concurrency (%d)", s.Fetch.PerHost, s.Fetch.Concurrency)
	case s.Fetch.ConnectTimeout <= 0:
		return exitcode.Usagef("--fetch-connect-timeout %s: want a positive duration such as 3s", s.Fetch.ConnectTimeout)
	case s.Fetch.HeaderTimeout <= 0:
		return exitcode.Usagef("--fetch-header-timeout %s: want a positive duration such as 5s", s.Fetch.HeaderTimeout)
	case s.MaxInFlight < 1:
		return exitcode.Usagef("--collector-max-in-flight %d: want a positive number such as %d", s.MaxInFlight, collector.DefaultMaxInFlight)
	}
	return nil
}

// errNoDatabase: the collector keeps its state in PostgreSQL.
var errNoDatabase = errors.New("no PostgreSQL to keep collected products in: set DATABASE_DSN / --database-dsn (shopstream dev starts one when PostgreSQL is installed: make postgres)")

// Collector builds the image collector over the process's database, blob
// storage and an image fetcher; its Run closes the last two when it ends.
func (e *Env) Collector(ctx context.Context, s CollectorSettings) (supervise.Component, error) {
	if e.Config.DatabaseDSN == "" {
		return nil, errNoDatabase
	}
	if _, err := e.checkAccess(acls.Collector); err != nil {
		return nil, err
	}
	db, err := e.Database(ctx)
	if err != nil {
		return nil, err
	}
	blobs, err := blobstore.Open(ctx, e.Config.BlobURL, e.Config.DataDir)
	if err != nil {
		return nil, err
	}
	s.Fetch.Registerer = e.Metrics
	fetcher, err := imagefetch.New(s.Fetch)
	if err != nil {
		blobs.Close()
		return nil, err
	}
	col, err := collector.New(collector.Options{
		Deps:    e.deps("collector"),
		Group:   s.Group,
		Store:   collector.NewStore(db),
		Blobs:   blobs,
		Fetcher: fetcher,
		// Empty unless given: collector.New picks a random one.
		TransactionalID: s.TransactionalID,
		BatchWait:       s.ParkAfter,
		MaxInFlight:     s.MaxInFlight,
	})
	if err != nil {
		fetcher.Close()
		blobs.Close()
		return nil, err
	}
	return e.Guard(acls.Collector, &collectorRun{Collector: col, close: func() { fetcher.Close(); blobs.Close() }}), nil
}

// collectorRun closes the collector's blob storage and fetcher after Run.
type collectorRun struct {
	*collector.Collector
	close func()
}

func (c *collectorRun) Run(ctx context.Context) error {
	defer c.close()
	return c.Collector.Run(ctx)
}

// DevCollectorSettings are the collector's settings inside `shopstream
// dev`: allowed to fetch from the embedded image server, and from the
// hosts in extra.
func DevCollectorSettings(extra ...string) CollectorSettings {
	return CollectorSettings{Group: collector.DefaultGroup, Fetch: imagefetch.Options{AllowHosts: DevImageHosts(extra...)}}
}

// DevImageHosts are the image hosts `shopstream dev` allows although they
// are on loopback: its own image server, and extra.
func DevImageHosts(extra ...string) []string {
	host := productapi.DefaultAddr
	_, port, _ := strings.Cut(host, ":")
	return append([]string{host, "localhost:" + port}, extra...)
}

// APISettings are the product API's own settings.
type APISettings struct {
	Addr    string
	MaxBody int64
	// Images serves the generated test images at /images/: only
	// `shopstream dev` does.
	Images bool
	// InsecureNoAuth lets the API serve beyond loopback without tokens.
	InsecureNoAuth bool
	// AllowHosts are the image hosts that may be internal addresses.
	AllowHosts []string
}

// APIKeys opens the product API's tokens file: nil (no authentication)
// when the setting is empty and the default file does not exist.
func (e *Env) APIKeys() (*apiauth.Keys, error) {
	path := e.Config.TokensFile()
	if e.Config.APITokensFile == "" {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
	}
	return apiauth.Open(path, nil)
}

// API builds the product API over the process's clients; reads come from
// the database when one is configured. It serves the process's /metrics
// (to a token for every mall when it has tokens) and ready's answer on
// /readyz. Its producer is a client of its own whose records give up after
// a while, so that a Kafka that is away cannot fill its buffer for good.
func (e *Env) API(ctx context.Context, s APISettings, ready telemetry.Readiness) (*productapi.API, error) {
	var reader catalog.Reader
	if e.Config.DatabaseDSN != "" {
		db, err := e.Database(ctx)
		if err != nil {
			return nil, err
		}
		reader = collector.NewStore(db)
	} else {
		e.Logger.Warn("no DATABASE_DSN: the product API accepts products but cannot serve complete products (reads answer 503)")
	}
	if _, err := e.checkAccess(acls.API); err != nil {
		return nil, err
	}
	keys, err := e.APIKeys()
	if err != nil {
		return nil, err
	}
	if keys == nil {
		e.Logger.Warn("the product API has no tokens: anyone who reaches it may write; create one with `shopstream api token create`", "tokens_file", e.Config.TokensFile())
	}
	// A producer of the API's own, as its principal, whose records give up
	// after 30 s, so a POST answers 503 while Kafka is away instead of hanging.
	producer, err := e.KafkaFor(acls.API).NewClient(kgo.RecordDeliveryTimeout(30 * time.Second))
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, closerFunc(producer.Close))
	return productapi.New(productapi.Options{
		Producer: producer, Serde: e.Serde, Topics: e.Config.Topics, Catalog: reader,
		Registerer: e.Metrics, Gatherer: e.Metrics, Readiness: ready, Logger: e.Logger.With("component", "api"),
		Addr: s.Addr, MaxBody: s.MaxBody, NoImages: !s.Images,
		Auth: keys, InsecureNoAuth: s.InsecureNoAuth, AllowHosts: s.AllowHosts,
	})
}

// closerFunc closes what has a Close without an error.
type closerFunc func()

func (f closerFunc) Close() error { f(); return nil }
