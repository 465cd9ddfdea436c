package process

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/pgcluster/pgtest"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/supervise"
	"github.com/shopstream/shopstream/internal/telemetry"
)

// readyz answers the probe at addr: its status code and who is not ready.
func readyz(t *testing.T, addr string) (int, map[string]string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		NotReady map[string]string `json:"not_ready"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	return resp.StatusCode, r.NotReady
}

// The streamer process as `shopstream streamer` builds it, on kfake and
// srfake: /readyz names the filter and the recommender until they work (the
// filter loaded, the table caught up, both groups joined), then says ready;
// told to stop, the whole process stops within its bound.
func TestStreamerProcessBecomesReadyAndStops(t *testing.T) {
	kc := kafkatest.Start(t)
	createTopics(kc)
	cfg := config.Default()
	cfg.KafkaBrokers, cfg.SchemaRegistryURL = kc.Brokers, kc.RegistryURL

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := Connect(ctx, cfg, slog.New(slog.DiscardHandler), telemetry.NewRegistry(), NeedKafka)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	g := supervise.New(0)
	if err := e.AddStreamer(g, StreamerSettings{Group: "process-test", InstanceID: "process-test-1", MaxBatch: 100, Recommender: true}); err != nil {
		t.Fatal(err)
	}
	addr, err := telemetry.Serve(ctx, "127.0.0.1:0", e.Metrics, g)
	if err != nil {
		t.Fatal(err)
	}
	if code, notReady := readyz(t, addr); code != http.StatusServiceUnavailable || notReady["streamer"] == "" || notReady["recommender"] == "" {
		t.Errorf("/readyz before the components run = %d %v, want 503 naming the streamer and the recommender", code, notReady)
	}

	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(rctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := g.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	if code, notReady := readyz(t, addr); code != http.StatusOK || len(notReady) != 0 {
		t.Errorf("/readyz once ready = %d %v, want 200", code, notReady)
	}
	stop()
	t0 := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the process stopped with %v, want a clean stop", err)
		}
		t.Logf("stopped in %s", time.Since(t0).Round(time.Millisecond))
	case <-time.After(supervise.DefaultStopWithin + 2*time.Second):
		t.Fatalf("the process did not stop within %s", supervise.DefaultStopWithin)
	}
}

func TestMain(m *testing.M) { pgtest.Main(m) }

// createTopics creates every topic as bootstrap does: three partitions, the
// filter topics one and compacted.
func createTopics(kc *kafkatest.Cluster) {
	topics := records.DefaultTopics()
	compact := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
	for _, name := range []string{topics.Products, topics.CompleteProducts, topics.Filtered, topics.Find, topics.Recommendations, topics.DLQ} {
		kc.CreateTopic(3, nil, name)
	}
	kc.CreateTopic(1, compact, topics.Filter)
	kc.CreateTopic(1, compact, topics.FilterApplied)
}
