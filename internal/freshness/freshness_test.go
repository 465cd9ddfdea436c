package freshness

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/telemetry"
)

func TestStagesFollowTheNamingRule(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Stages() {
		if err := telemetry.CheckMetricName(s.Metric, telemetry.KindHistogram); err != nil {
			t.Error(err)
		}
		if seen[s.Key] || s.Key == "" || s.Name == "" || s.Help == "" {
			t.Errorf("stage %+v: key listed twice or something unnamed", s)
		}
		seen[s.Key] = true
	}
	if b := Buckets(); !containsFloat(b, DefaultThreshold.Seconds()) {
		t.Errorf("buckets %v lack the alert threshold %v: its quantile would be interpolated", b, DefaultThreshold)
	}
}

func containsFloat(xs []float64, x float64) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func TestQuantileAsPrometheusDoes(t *testing.T) {
	bounds := []float64{0.1, 1, 5, math.Inf(1)}
	for i, c := range []struct {
		counts []uint64
		q      float64
		want   float64
	}{
		{[]uint64{100, 100, 100, 100}, 0.5, 0.05},  // all below 0.1: linear from 0
		{[]uint64{50, 100, 100, 100}, 0.99, 0.982}, // 0.1 + 0.9*(99-50)/50
		{[]uint64{0, 0, 100, 100}, 0.5, 3},         // 1 + 4*50/100
		{[]uint64{0, 0, 0, 10}, 0.5, 5},            // in +Inf: the largest finite bound
	} {
		n := c.counts[len(c.counts)-1]
		if got := Quantile(c.q, bounds, c.counts, n); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("#%d: q%.2f = %v, want %v", i, c.q, got, c.want)
		}
	}
	if got := Quantile(0.5, bounds, []uint64{0, 0, 0, 0}, 0); !math.IsNaN(got) {
		t.Errorf("no observations: %v, want NaN", got)
	}
}

// Two processes expose the filtered stage, one the stored stage: status
// adds the first up, says nothing of stages nobody exposes, and skips a
// process that does not answer.
func TestScrapeAddsUpTheProcesses(t *testing.T) {
	serve := func(observe func(f *telemetry.Factory)) string {
		reg := prometheus.NewRegistry()
		f := telemetry.With(reg)
		observe(f)
		if err := f.Err(); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		t.Cleanup(srv.Close)
		return srv.URL + "/metrics"
	}
	now := time.Now()
	a := serve(func(f *telemetry.Factory) {
		h := Histogram(f, Filtered())
		for range 97 {
			Observe(h, now, now.Add(-20*time.Millisecond))
		}
		Observe(h, now, now.Add(time.Second)) // a producer clock ahead: no delay
	})
	b := serve(func(f *telemetry.Factory) {
		h := Histogram(f, Filtered())
		Observe(h, now, now.Add(-8*time.Second))
		Observe(h, now, now.Add(-8*time.Second))
		s := Histogram(f, Stored())
		for range 10 {
			Observe(s, now, now.Add(-300*time.Millisecond))
		}
	})
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	reports, errs := Scrape(context.Background(), http.DefaultClient, []string{a, b, down.URL + "/metrics"})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), down.URL) {
		t.Errorf("errors %v, want one for the process that is down", errs)
	}
	by := map[string]Report{}
	for _, r := range reports {
		by[r.Key] = r
	}
	if f := by["filtered"]; f.Count != 100 || f.P50 < 0.01 || f.P50 > 0.025 || f.P99 < 5 || f.P99 > 10 || len(f.Sources) != 2 {
		t.Errorf("filtered: %+v, want 100 observations, p50 between 10 and 25 ms, p99 between 5 and 10 s, from 2 processes", f)
	}
	if s := by["stored"]; s.Count != 10 || s.P50 < 0.25 || s.P50 > 0.5 {
		t.Errorf("stored: %+v, want 10 observations around 300 ms", s)
	}
	if c := by["complete"]; c.Count != 0 || c.P99 != 0 {
		t.Errorf("complete: %+v, want nothing", c)
	}
	if _, err := json.Marshal(reports); err != nil {
		t.Errorf("reports do not encode as JSON (status --json): %v", err)
	}
	var out bytes.Buffer
	Print(&out, reports)
	for _, want := range []string{"product created to filtered               100", "product created to complete with images   0         -      -"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestAgedRecommendation(t *testing.T) {
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	rec := &records.Recommendation{UserID: "alice", LastQuery: "tv", LastSearchedAt: at.Add(-2 * time.Second),
		Products: []records.RecommendedProduct{{ProductID: "p1", MallID: "m1", RecommendedAt: at.Add(-90 * time.Second)}}}
	b, err := json.Marshal(Aged(rec, at))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		UserID     string  `json:"user_id"`
		AgeSeconds float64 `json:"age_seconds"`
		Products   []struct {
			ProductID  string  `json:"product_id"`
			AgeSeconds float64 `json:"age_seconds"`
		} `json:"products"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.UserID != "alice" || got.AgeSeconds != 2 || len(got.Products) != 1 || got.Products[0].ProductID != "p1" || got.Products[0].AgeSeconds != 90 {
		t.Fatalf("recs --json: %s", b)
	}
}
