package collector_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/collector"
	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/imagefetch"
	"github.com/shopstream/shopstream/internal/imageserver"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/testtool"
)

// tarpits are n loopback servers that accept connections and never answer,
// each a host of its own.
func tarpits(t *testing.T, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = testtool.SilentListener(t)
	}
	return out
}

// statusOf is a product's status in the API: "" while unknown.
func (r *rig) statusOf(mall, id string) string {
	r.t.Helper()
	code, body := r.do("GET", "/api/v1/products/"+id+"?mallId="+mall, nil)
	if code != http.StatusOK {
		return ""
	}
	s, _ := body["status"].(string)
	return s
}

// A product from a source other than the API may name any number of
// images: the first MaxImages are collected, the rest refused with a
// reason, and the product ends failed.
func TestImagesPerProductAreCapped(t *testing.T) {
	r := newRig(t)
	var ims []records.Image
	for i := 0; i < 15; i++ {
		ims = append(ims, records.Image{URL: r.imageURL(fmt.Sprintf("many-%d", i))})
	}
	r.produce(records.Product{MallID: "m1", ProductID: "many", Name: "Many", Images: ims})
	eventually(t, 20*time.Second, "the product with 15 images reported", func() bool { return r.statusOf("m1", "many") != "" })
	_, body := r.do("GET", "/api/v1/products/many?mallId=m1", nil)
	reason, _ := body["reason"].(string)
	if body["status"] != "failed" || !strings.Contains(reason, "15 images, more than the 10 a product may have: images 11 to 15 refused") {
		t.Fatalf("%v, want failed naming the refused images", body)
	}
	fetched := 0
	for i := 0; i < 15; i++ {
		if r.hitsOf(fmt.Sprintf("/images/many-%d.png", i)) > 0 {
			fetched++
		}
	}
	if fetched != 10 {
		t.Fatalf("%d images fetched, want the first 10", fetched)
	}
}

// A product whose images hang is parked after the batch's wait: the batch
// commits the products beside it, and the parked one ends later, once its
// host's header timeout says it is a tarpit (once: not retried).
func TestHangingImagesAreParkedNotWaitedFor(t *testing.T) {
	hang := tarpits(t, 1)[0]
	r := newRigTuned(t, nil, func(f *imagefetch.Options, c *collector.Options) {
		f.AllowHosts = append(f.AllowHosts, hang)
		f.HeaderTimeout, f.Timeout = 2*time.Second, 5*time.Second
		c.BatchWait = 200 * time.Millisecond
	})
	r.post(product("slow", "p1", "Slow", "http://"+hang+"/a.png", "http://"+hang+"/b.png"))
	r.post(product("fast", "p1", "Fast", r.imageURL("fast")))
	t0 := time.Now()
	eventually(t, 10*time.Second, "the fast mall's product complete", func() bool { return r.statusOf("fast", "p1") == "complete" })
	fast := time.Since(t0)
	if st := r.statusOf("slow", "p1"); st != "" {
		t.Fatalf("the slow product is %q already, want still collecting", st)
	}
	eventually(t, 10*time.Second, "the slow product failed", func() bool { return r.statusOf("slow", "p1") == "failed" })
	slow := time.Since(t0)
	_, body := r.do("GET", "/api/v1/products/p1?mallId=slow", nil)
	if reason, _ := body["reason"].(string); !strings.Contains(reason, "no response headers within 2s") || strings.Contains(reason, "attempts") {
		t.Fatalf("slow product: %v, want the header timeout, tried once", body)
	}
	// PostgreSQL is written just before the Kafka commit: the dead letter
	// may come a moment after the state.
	eventually(t, 10*time.Second, "a dead letter for the parked product that failed", func() bool {
		rec := lastByKey(r.topicRecords(dlqTopic), "slow/p1")
		return rec != nil && deadletter.Parse(rec).Reason == deadletter.ReasonImagesFailed
	})
	if fast >= 2*time.Second {
		t.Errorf("the fast product took %s, as long as the slow one's header timeout", fast)
	}
	t.Logf("fast mall's product complete after %s, the slow one failed after %s", fast.Round(time.Millisecond), slow.Round(time.Millisecond))
}

// A parked product survives its collector: the next instance resumes it
// from PostgreSQL, and it completes once its image host answers.
func TestParkedProductsAreResumedAfterARestart(t *testing.T) {
	r, gated, open := gatedRig(t, nil)
	r.post(product("m1", "gated", "Gated", gated+"/gated.png"))
	r.post(product("m1", "marker", "Marker", r.imageURL("marker")))
	eventually(t, 10*time.Second, "the product after the gated one complete", func() bool { return r.statusOf("m1", "marker") == "complete" })
	r.stop() // the gated product is parked, its offset committed
	if st := r.statusOf("m1", "gated"); st != "" {
		t.Fatalf("the gated product is %q, want still collecting", st)
	}
	open()
	stop := r.startCollector(context.Background())
	defer stop()
	eventually(t, 20*time.Second, "the parked product resumed and complete", func() bool { return r.statusOf("m1", "gated") == "complete" })
	// Exactly one complete record of it, from the instance that resumed it
	// (committed a moment after its state).
	n := 0
	eventually(t, 10*time.Second, "the resumed product on the complete-product topic", func() bool {
		n = r.completeRecords("m1/gated")
		return n > 0
	})
	if n != 1 {
		t.Fatalf("%d complete records of the resumed product, want 1", n)
	}
}

// The load test: one mall posts 20 products with 10 image URLs each on 20
// tarpit hosts that accept connections and never answer (200 hanging URLs);
// then another mall posts a product now and then. Each must complete within
// a few seconds (less than one header timeout), while the tarpit's products
// still hold their share of the downloads. The collector runs with the
// default fetch settings (16 downloads, 4 per host, at most 12 per mall,
// 3 s to connect, 5 s for the headers) and its default parking (after a
// 2 s batch wait), so going through all 200 URLs takes the tarpit more than
// a minute; the test does not wait for that. Loopback only; it stops by
// itself (about 15 s).
func TestOneMallsTarpitDoesNotDelayAnother(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test of about 15 s")
	}
	hosts := tarpits(t, 20)
	r := newRigTuned(t, nil, func(f *imagefetch.Options, c *collector.Options) {
		f.AllowHosts = append(f.AllowHosts, hosts...)
		f.Attempts, f.Backoff = imagefetch.DefaultAttempts, imagefetch.DefaultBackoff
	})
	// The honest mall alone first: the baseline.
	t0 := time.Now()
	r.post(product("honest", "p0", "Honest", r.imageURL("honest-0")))
	eventually(t, 20*time.Second, "the baseline product", func() bool { return r.statusOf("honest", "p0") == "complete" })
	baseline := time.Since(t0)

	tarpitAt := time.Now()
	for i := 0; i < 20; i++ {
		var urls []string
		for j := 0; j < 10; j++ {
			urls = append(urls, fmt.Sprintf("http://%s/tarpit-%d-%d.png", hosts[(i+j)%len(hosts)], i, j))
		}
		r.post(product("tarpit", fmt.Sprintf("t%d", i), "Tarpit", urls...))
	}
	var delays []time.Duration
	for k := 1; k <= 3; k++ {
		time.Sleep(300 * time.Millisecond)
		id := fmt.Sprintf("p%d", k)
		t0 := time.Now()
		r.post(product("honest", id, "Honest", r.imageURL("honest-"+id)))
		eventually(t, 60*time.Second, "the honest product "+id, func() bool { return r.statusOf("honest", id) == "complete" })
		delays = append(delays, time.Since(t0))
	}
	// The honest products overtook the tarpit: none of its products is
	// done yet, they are parked.
	waiting := 0
	for i := 0; i < 20; i++ {
		if r.statusOf("tarpit", fmt.Sprintf("t%d", i)) == "" {
			waiting++
		}
	}
	parked := r.gauge("shopstream_collector_parked_products")
	if waiting == 0 || parked == 0 {
		t.Fatalf("%d tarpit products still collecting, %v parked: the honest products did not run beside the tarpit", waiting, parked)
	}
	// The tarpit's first products fail on the header timeout, tried once.
	var firstFailed time.Duration
	eventually(t, 30*time.Second, "a tarpit product failed", func() bool {
		for i := 0; i < 20; i++ {
			if r.statusOf("tarpit", fmt.Sprintf("t%d", i)) == "failed" {
				firstFailed = time.Since(tarpitAt)
				_, body := r.do("GET", fmt.Sprintf("/api/v1/products/t%d?mallId=tarpit", i), nil)
				if reason, _ := body["reason"].(string); !strings.Contains(reason, "no response headers within 5s") || strings.Contains(reason, "attempts") {
					t.Fatalf("tarpit product t%d: %v, want the header timeout, tried once", i, body)
				}
				return true
			}
		}
		return false
	})
	worst := slices.Max(delays)
	t.Logf("honest product alone: %s; beside 200 hanging URLs: %v (worst %s); then %d of 20 tarpit products still collecting, %v parked; the first tarpit product failed %s after the tarpit began",
		baseline.Round(time.Millisecond), roundAll(delays), worst.Round(time.Millisecond), waiting, parked, firstFailed.Round(time.Millisecond))
	if worst >= imagefetch.DefaultHeaderTimeout {
		t.Errorf("an honest product waited %s beside the tarpit: as long as one header timeout (%s)", worst, imagefetch.DefaultHeaderTimeout)
	}
}

// gatedImages is an image server that holds every request until open is
// called (by the test, or when it ends).
func gatedImages(t *testing.T) (url string, open func()) {
	gate := make(chan struct{})
	var once sync.Once
	open = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	png, _ := imageserver.PNG("gated", 16)
	gated := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		select {
		case <-gate:
		case <-req.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Write(png)
	}))
	t.Cleanup(gated.Close)
	return gated.URL, open
}

// gatedRig is a rig whose fetcher allows a gatedImages server, waits for
// it as long as it takes, and parks after 200ms; tune, when given, changes
// the collector's options further.
func gatedRig(t *testing.T, tune func(c *collector.Options)) (r *rig, gated string, open func()) {
	gated, open = gatedImages(t)
	r = newRigTuned(t, nil, func(f *imagefetch.Options, c *collector.Options) {
		f.AllowHosts = append(f.AllowHosts, strings.TrimPrefix(gated, "http://"))
		f.HeaderTimeout, f.Timeout = 30*time.Second, 30*time.Second
		c.BatchWait = 200 * time.Millisecond
		if tune != nil {
			tune(c)
		}
	})
	return r, gated, open
}

// completeRecords counts the committed complete records of key (not its
// tombstones).
func (r *rig) completeRecords(key string) int {
	n := 0
	for _, rec := range r.topicRecords(completeTopic) {
		if string(rec.Key) == key && rec.Value != nil {
			n++
		}
	}
	return n
}

// gauge reads a gauge of the rig's registry.
func (r *rig) gauge(name string) float64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	r.t.Fatalf("no gauge %s", name)
	return 0
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
