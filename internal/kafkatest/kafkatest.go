// Package kafkatest runs, for one test, an in-process Kafka (franz-go's
// kfake) and Confluent-compatible schema registry (srfake), and hands out
// the clients shopstream's components take, pointing at them: a
// *clients.Kafka and a *records.Serde. Both stop when the test ends.
//
// The cluster is shaped like the one `shopstream dev` runs: one broker,
// three partitions per topic created without a count, compaction within
// seconds. Options change that for a test that needs more. Tests that need
// the whole embedded stack (Temporal, fixed ports, data kept on disk) start
// package environment's instead.
package kafkatest

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/randid"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/tlsgen"
)

// Cluster is a running kfake cluster and srfake registry with clients for
// them.
type Cluster struct {
	// Fake is the kfake cluster, for a test that moves leaders, injects
	// request faults or shuts a broker down.
	Fake *kfake.Cluster
	// Brokers are the cluster's listen addresses.
	Brokers []string
	// Kafka makes clients of the cluster, as components are given one.
	Kafka *clients.Kafka
	// Registry is the fake registry, for a test that inspects or
	// intercepts it; RegistryURL is where it serves.
	Registry    *srfake.Registry
	RegistryURL string
	// Serde encodes and decodes records over the registry.
	Serde *records.Serde

	// Security is how c.Kafka connects: PLAINTEXT unless Secure was given;
	// then it authenticates as the superuser "admin" (mTLS: the client
	// certificate of CN admin).
	Security config.KafkaSecurity
	// CA signed the brokers' (and clients') certificates with Secure TLS;
	// its PEM is in TLSDir/ca.crt, with admin.crt and admin.key.
	CA     *tlsgen.CA
	TLSDir string
	// Passwords are the SASL users' passwords, "admin" and Secure.Users.
	Passwords map[string]string

	t       testing.TB
	admin   *kadm.Client
	dataDir string
}

// Option changes the cluster Start runs.
type Option func(*options)

type options struct {
	brokers    int
	partitions int
	dataDir    string
	kfake      []kfake.Opt
	secure     *Secure
}

// Secure says how a secured cluster listens and authenticates.
type Secure struct {
	// TLS listens with a certificate from a fresh CA; ClientCert also
	// requires clients to present one the CA signed (mutual TLS).
	TLS, ClientCert bool
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL.
	Mechanism string
	// ACLs turns authorization on: only the superuser "admin" may do
	// anything until ACLs allow the Users.
	ACLs bool
	// Users are SASL users besides "admin", with random passwords.
	Users []string
}

// Secured runs the cluster with TLS, SASL or ACLs, and points c.Kafka at it
// as the superuser.
func Secured(s Secure) Option { return func(o *options) { o.secure = &s } }

// Brokers runs n brokers instead of one, for a test of leader or
// coordinator moves.
func Brokers(n int) Option { return func(o *options) { o.brokers = n } }

// Partitions is the partition count of a topic created without one
// (auto-created, or created with -1) instead of 3.
func Partitions(n int) Option { return func(o *options) { o.partitions = n } }

// DataDir keeps the cluster's state in dir, as `shopstream dev` keeps its
// Kafka, so that a test can start another cluster from it, or from a
// Crash copy of it.
func DataDir(dir string) Option {
	return func(o *options) {
		o.dataDir = dir
		o.kfake = append(o.kfake, kfake.DataDir(dir))
	}
}

// AutoCreateTopics lets a client that asks for it
// (kgo.AllowAutoTopicCreation) create a missing topic, as a broker with
// auto.create.topics.enable does.
func AutoCreateTopics() Option {
	return func(o *options) { o.kfake = append(o.kfake, kfake.AllowAutoTopicCreation()) }
}

// SeedTopics creates topics with the given partition count (-1: the
// default) before the test starts.
func SeedTopics(partitions int32, topics ...string) Option {
	return func(o *options) { o.kfake = append(o.kfake, kfake.SeedTopics(partitions, topics...)) }
}

// KfakeOpts passes options to kfake as they are, after the ones above.
func KfakeOpts(opts ...kfake.Opt) Option {
	return func(o *options) { o.kfake = append(o.kfake, opts...) }
}

// Start starts a cluster and a registry for t, fails t if either does not
// start, and stops both when t ends.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	o := options{brokers: 1, partitions: 3}
	for _, f := range opts {
		f(&o)
	}
	c := &Cluster{t: t, Security: config.Default().KafkaSecurity}
	kopts := []kfake.Opt{
		kfake.NumBrokers(o.brokers),
		kfake.DefaultNumPartitions(o.partitions),
		// Compact within seconds, not kfake's default hour, as the dev stack.
		kfake.BrokerConfigs(map[string]string{"log.cleaner.backoff.ms": "30000"}),
	}
	if o.secure != nil {
		kopts = append(kopts, c.secure(*o.secure)...)
	}
	fake, err := kfake.NewCluster(append(kopts, o.kfake...)...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(fake.Close)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	c.Fake, c.Brokers, c.Registry, c.RegistryURL = fake, fake.ListenAddrs(), reg, reg.URL()
	c.dataDir = o.dataDir
	if c.Kafka, err = clients.NewKafka(clients.KafkaOptions{Brokers: c.Brokers, Security: c.Security}); err != nil {
		t.Fatal(err)
	}
	c.Serde = c.NewSerde()
	return c
}

// secure makes the CA, certificates and users of s and returns the kfake
// options that turn them on; c.Security becomes the superuser's.
func (c *Cluster) secure(s Secure) []kfake.Opt {
	t := c.t
	var opts []kfake.Opt
	if s.TLS {
		ca, err := tlsgen.NewCA("kafkatest CA", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		server, err := ca.Server([]string{"127.0.0.1", "localhost"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		srvCfg, err := ca.ServerConfig(server, s.ClientCert)
		if err != nil {
			t.Fatal(err)
		}
		c.CA, c.TLSDir = ca, t.TempDir()
		if err := os.WriteFile(filepath.Join(c.TLSDir, "ca.crt"), ca.CertPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		c.Security.Protocol = config.ProtocolSSL
		c.Security.CALocation = filepath.Join(c.TLSDir, "ca.crt")
		if s.ClientCert {
			admin, err := ca.Client("admin", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if c.Security.CertificateLocation, c.Security.KeyLocation, err = admin.Write(c.TLSDir, "admin"); err != nil {
				t.Fatal(err)
			}
		}
		opts = append(opts, kfake.TLS(srvCfg))
	}
	if s.Mechanism != "" {
		c.Passwords = map[string]string{"admin": randid.Hex(12)}
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser(s.Mechanism, "admin", c.Passwords["admin"]))
		for _, u := range s.Users {
			c.Passwords[u] = randid.Hex(12)
			opts = append(opts, kfake.User(s.Mechanism, u, c.Passwords[u]))
		}
		c.Security.Protocol = config.ProtocolSASLPlaintext
		if s.TLS {
			c.Security.Protocol = config.ProtocolSASLSSL
		}
		c.Security.Mechanism, c.Security.Username, c.Security.Password = s.Mechanism, "admin", c.Passwords["admin"]
	}
	if s.ACLs {
		opts = append(opts, kfake.EnableACLs())
	}
	return opts
}

// As returns clients of the cluster that authenticate as user (one of
// Secure.Users).
func (c *Cluster) As(user string) *clients.Kafka {
	c.t.Helper()
	k, err := c.Kafka.As(user, c.Passwords[user])
	if err != nil {
		c.t.Fatal(err)
	}
	return k
}

// NewSerde returns a serde of its own over the registry, with an empty
// cache, as another process would have: it must learn writer schemas from
// the registry, not from the cache of the serde that encoded them.
func (c *Cluster) NewSerde() *records.Serde {
	c.t.Helper()
	s, err := clients.NewSerde(c.RegistryURL)
	if err != nil {
		c.t.Fatal(err)
	}
	return s
}

// Client returns a client of the cluster with the base options and extra,
// closed when the test ends.
func (c *Cluster) Client(extra ...kgo.Opt) *kgo.Client {
	c.t.Helper()
	cl, err := c.Kafka.NewClient(extra...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// Admin returns the cluster's admin client, closed when the test ends.
func (c *Cluster) Admin() *kadm.Client {
	if c.admin == nil {
		c.admin = kadm.NewClient(c.Client())
	}
	return c.admin
}

// CreateTopic creates a topic with partitions (-1: the default) and
// configs, and fails the test if it cannot.
func (c *Cluster) CreateTopic(partitions int32, configs map[string]*string, topic string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Admin().CreateTopic(ctx, partitions, 1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		c.t.Fatalf("create topic %s: %v", topic, err)
	}
}

// NewSerde returns a serde over a registry of its own, for a test that
// encodes and decodes without Kafka; the registry stops when t ends.
func NewSerde(t testing.TB) *records.Serde {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	s, err := clients.NewSerde(reg.URL())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Crash returns a copy of the cluster's data directory (DataDir) made
// while it runs: what a SIGKILL of its process leaves on disk, since kfake
// writes every batch as it comes and the rest of its state (open
// transactions among it) only when it closes.
func (c *Cluster) Crash() string {
	c.t.Helper()
	if c.dataDir == "" {
		c.t.Fatal("Crash needs a cluster started with DataDir")
	}
	dst := c.t.TempDir()
	CopyDir(c.t, c.dataDir, dst)
	return dst
}

// CopyDir copies the tree src into dst.
func CopyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}

// ReadCommitted reads topic from the start as a read_committed consumer
// sees it, handing each record to fn, until want records have come and one
// more quiet poll shows that nothing else (a duplicate, an aborted record)
// follows, or a minute has passed. It returns how many records it read.
func ReadCommitted(t testing.TB, k *clients.Kafka, topic string, want int, fn func(*kgo.Record)) int {
	t.Helper()
	cl, err := k.NewClient(kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	total := 0
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		wait := 3 * time.Second
		if total >= want {
			wait = 500 * time.Millisecond // one quiet poll: nothing else follows
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			fn(r)
		})
		total += n
		if n == 0 && total >= want {
			break
		}
	}
	return total
}
