package streamer

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/testtool"
)

// A test re-runs this test binary as a streamer instance in its own process,
// so that it can SIGKILL it: no deferred End, no LeaveGroup, an open
// transaction left behind, as when a machine dies.
const (
	childEnv         = "STREAMER_TEST_CHILD"
	childBrokersEnv  = "STREAMER_TEST_CHILD_BROKERS"
	childRegistryEnv = "STREAMER_TEST_CHILD_REGISTRY"
)

// Short timeouts make a dead member's partitions move, and its open
// transaction abort, within seconds (kfake's minimum session timeout is 6 s).
const (
	killSessionTimeout = 6 * time.Second
	killTxnTimeout     = 6 * time.Second
)

func TestMain(m *testing.M) {
	if id := os.Getenv(childEnv); id != "" {
		os.Exit(runChild(id))
	}
	if os.Getenv(brokerEnv) != "" {
		os.Exit(runBroker())
	}
	os.Exit(m.Run())
}

func runChild(id string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// The child builds its clients as `shopstream streamer` does.
	serde, err := clients.NewSerde(os.Getenv(childRegistryEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	k, err := clients.NewKafka(clients.KafkaOptions{Brokers: strings.Split(os.Getenv(childBrokersEnv), ",")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := New(Options{
		Deps: component.Deps{
			Kafka: k.With(kgo.ClientID(id)), Serde: serde, Topics: records.DefaultTopics(),
			Registerer: prometheus.NewRegistry(),
		},
		InstanceID: id, HeartbeatInterval: 200 * time.Millisecond,
		SessionTimeout: killSessionTimeout, TransactionTimeout: killTxnTimeout,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		<-s.Ready()
		fmt.Println("ready")
	}()
	if err := s.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestKilledInstanceLosesAndDuplicatesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a session timeout")
	}
	e := newTestEnv(t, 12)
	e.setFilter(1, "phone", false)

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"=victim",
		childBrokersEnv+"="+strings.Join(e.kc.Brokers, ","), childRegistryEnv+"="+e.kc.RegistryURL)
	child.Stderr = os.Stderr
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = child.Process.Kill()
		_ = child.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ready <- sc.Scan() && sc.Text() == "ready"
		for sc.Scan() {
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("the child instance did not start")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the child instance was not ready in 30s")
	}

	var rs []*running
	for _, id := range []string{"survivor-1", "survivor-2"} {
		cfg := e.config(id)
		cfg.SessionTimeout, cfg.TransactionTimeout = killSessionTimeout, killTxnTimeout
		rs = append(rs, e.start(cfg))
	}
	owned := e.waitAssigned("victim", 20*time.Second)

	// Products stream in; a third of the way through, once the victim has
	// committed a transaction on one of its partitions, it dies. (Killed at
	// a fixed point instead, a victim slowed by a loaded machine had
	// sometimes committed nothing yet, and the test then proved little.)
	const total = 9000
	for i := 0; i < total; i += 100 {
		e.produce(i, i+100)
		if i == total/3 {
			e.waitCommitted(DefaultGroup, owned, 30*time.Second)
			if err := child.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	e.waitProcessed(DefaultGroup, 90*time.Second)
	expectSameKeys(t, e.read(e.topics.Filtered), phoneKeys(0, total))

	var survivors float64
	for _, r := range rs {
		survivors += testtool.MetricValue(t, r.reg, "shopstream_streamer_records_in_total")
	}
	if survivors >= total {
		t.Errorf("the survivors processed all %v records: the victim committed nothing before it died, so the test proved little", survivors)
	}
	t.Logf("the victim committed %v of %d records before SIGKILL", total-survivors, total)
}

// waitAssigned waits until the group member with client id clientID owns
// partitions of the product topic, and returns them.
func (e *testEnv) waitAssigned(clientID string, timeout time.Duration) []int32 {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		groups, err := e.admin.DescribeGroups(context.Background(), DefaultGroup)
		if err == nil {
			for _, m := range groups[DefaultGroup].Members {
				if a, ok := m.Assigned.AsConsumer(); ok && m.ClientID == clientID {
					for _, tp := range a.Topics {
						if tp.Topic == e.topics.Products && len(tp.Partitions) > 0 {
							return tp.Partitions
						}
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("member %s owns no partition after %s", clientID, timeout)
	return nil
}

// waitCommitted waits until group has committed an offset past 0 on one of
// the product topic's partitions.
func (e *testEnv) waitCommitted(group string, partitions []int32, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		committed, err := e.admin.FetchOffsets(context.Background(), group)
		if err == nil {
			for _, p := range partitions {
				if o, ok := committed.Lookup(e.topics.Products, p); ok && o.At > 0 {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("group %s committed nothing on partitions %v in %s", group, partitions, timeout)
}
