package imagefetch

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/imageserver"
	"github.com/shopstream/shopstream/internal/testtool"
)

// A host gets at most PerHost slots; a tenant at most three quarters of
// them; a freed slot goes to the waiting tenant that holds the fewest.
func TestSchedulerSharesSlotsFairly(t *testing.T) {
	s := newScheduler(4, 2)
	ctx := context.Background()
	var held []func()
	take := func(tenant, host string) {
		rel, err := s.acquire(ctx, tenant, host)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, rel)
	}
	take("a", "slow:80")
	take("a", "slow:80")
	// The host is full: a's third download to it waits, while a's download
	// from another host does not.
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if _, err := s.acquire(wctx, "a", "slow:80"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third slot on a host with PerHost 2: %v", err)
	}
	cancel()
	take("a", "other:80")
	// a holds 3 of 4: its cap. b finds the last slot at once.
	wctx, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
	if _, err := s.acquire(wctx, "a", "third:80"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a tenant beyond three quarters of the slots: %v", err)
	}
	cancel()
	take("b", "fast:80")

	// Both wait now; a slot freed by a goes to b (fewest held), not a.
	got := make(chan string, 2)
	var wg sync.WaitGroup
	for _, tenant := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, err := s.acquire(ctx, tenant, tenant+"-2:80")
			if err == nil {
				got <- tenant
				rel()
			}
		}()
		time.Sleep(20 * time.Millisecond) // a queues first
	}
	held[2]() // a's download from other:80 ends
	if first := <-got; first != "b" {
		t.Fatalf("the freed slot went to %s, want b, which held fewer", first)
	}
	for _, rel := range append(held[:2], held[3:]...) {
		rel()
	}
	wg.Wait()
	if s.inUse != 0 || len(s.byHost) != 0 || len(s.byTenant) != 0 || len(s.waiting) != 0 {
		t.Fatalf("slots left behind: %d in use, hosts %v, tenants %v, %d waiting", s.inUse, s.byHost, s.byTenant, len(s.waiting))
	}
}

// A server that accepts and never answers costs one attempt and the header
// timeout, not three attempts of the whole timeout.
func TestHeaderTimeoutIsNotRetried(t *testing.T) {
	addr := testtool.SilentListener(t)
	o := fastOptions(addr)
	o.Timeout, o.HeaderTimeout = 5*time.Second, 200*time.Millisecond
	f := newFetcher(t, o)
	t0 := time.Now()
	_, err := f.Fetch(context.Background(), "http://"+addr+"/x.png")
	d := time.Since(t0)
	fe := fetchErr(t, err)
	if fe.Kind != "timeout" || !fe.Permanent || !strings.Contains(err.Error(), "no response headers within 200ms") || strings.Contains(err.Error(), "attempts") {
		t.Fatalf("%v (kind %s, permanent %v), want one timeout waiting for headers", err, fe.Kind, fe.Permanent)
	}
	if d > time.Second {
		t.Fatalf("took %s, want about the 200ms header timeout", d)
	}
}

// Many hanging downloads of one tenant do not delay another tenant's.
func TestAHangingTenantDoesNotDelayAnother(t *testing.T) {
	hang := testtool.SilentListener(t)
	img := serve(t, func(w http.ResponseWriter, r *http.Request) { writePNG(w) })
	o := fastOptions(hang, hostOf(img.Server))
	o.Timeout, o.HeaderTimeout, o.Concurrency = 5*time.Second, 2*time.Second, 8
	f := newFetcher(t, o)
	var started atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 50; i++ {
		go func() {
			started.Add(1)
			f.FetchFor(ctx, "tarpit", "http://"+hang+"/x.png")
		}()
	}
	for started.Load() < 50 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the tarpit's downloads hold their slots
	t0 := time.Now()
	if _, err := f.FetchFor(ctx, "honest", img.URL+"/ok.png"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 500*time.Millisecond {
		t.Fatalf("the honest tenant waited %s behind the tarpit's hanging downloads", d)
	}
}

func writePNG(w http.ResponseWriter) {
	png, _ := imageserver.PNG("x", 8)
	w.Header().Set("Content-Type", "image/png")
	w.Write(png)
}
