package freshness

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Report is one stage's freshness over everything the scraped processes
// observed since they started.
type Report struct {
	Stage string  `json:"stage"`
	Key   string  `json:"key"`
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_seconds"`
	P99   float64 `json:"p99_seconds"`
	// Sources are the /metrics URLs that expose the stage.
	Sources []string `json:"sources,omitempty"`
}

// histogram is one stage's buckets, added up over the processes.
type histogram struct {
	bounds  []float64
	counts  []uint64 // cumulative, per bound
	count   uint64
	sources []string
}

// Scrape reads each URL's /metrics and adds up every stage's histogram
// across the processes that expose it. A URL that does not answer is
// skipped (the dev stack's processes use a port each, and not all run); its
// error is returned beside the reports.
func Scrape(ctx context.Context, client *http.Client, urls []string) ([]Report, []error) {
	hs := map[string]*histogram{}
	var errs []error
	for _, u := range urls {
		if err := scrapeOne(ctx, client, u, hs); err != nil {
			errs = append(errs, err)
		}
	}
	var out []Report
	for _, s := range Stages() {
		r := Report{Stage: s.Name, Key: s.Key}
		if h := hs[s.Metric]; h != nil {
			r.Count, r.Sources = h.count, h.sources
			if h.count > 0 { // JSON has no NaN: no observation, no quantile
				r.P50, r.P99 = Quantile(0.5, h.bounds, h.counts, h.count), Quantile(0.99, h.bounds, h.counts, h.count)
			}
		}
		out = append(out, r)
	}
	return out, errs
}

func scrapeOne(ctx context.Context, client *http.Client, url string, hs map[string]*histogram) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", url, err)
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", url, err)
	}
	for _, s := range Stages() {
		mf := fams[s.Metric]
		if mf == nil || mf.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
		h := hs[s.Metric]
		if h == nil {
			h = &histogram{}
			hs[s.Metric] = h
		}
		for _, m := range mf.GetMetric() {
			h.add(m.GetHistogram())
		}
		h.sources = append(h.sources, url)
	}
	return nil
}

// add adds one series' buckets; bounds the histogram has not seen yet are
// merged in (every freshness histogram has the same, from Buckets).
func (h *histogram) add(d *dto.Histogram) {
	// First the bounds: a new one holds, of what was added so far, what
	// the next smaller one holds.
	for _, b := range d.GetBucket() {
		ub := b.GetUpperBound()
		if i, found := slices.BinarySearch(h.bounds, ub); !found {
			var below uint64
			if i > 0 {
				below = h.counts[i-1]
			}
			h.bounds = slices.Insert(h.bounds, i, ub)
			h.counts = slices.Insert(h.counts, i, below)
		}
	}
	// Then the counts: each merged bound gets this series' cumulative
	// count at the largest of its bounds not above it.
	buckets := d.GetBucket()
	j := -1
	for i, ub := range h.bounds {
		for j+1 < len(buckets) && buckets[j+1].GetUpperBound() <= ub {
			j++
		}
		switch {
		case j >= 0:
			h.counts[i] += buckets[j].GetCumulativeCount()
		case math.IsInf(ub, 1):
			h.counts[i] += d.GetSampleCount()
		}
	}
	h.count += d.GetSampleCount()
}

// Quantile estimates the q-quantile of a histogram (cumulative counts per
// upper bound, count observations in all) as Prometheus' histogram_quantile
// does: linear within the bucket it falls in, and the largest finite bound
// when it falls in the last, unbounded one. NaN without observations.
func Quantile(q float64, bounds []float64, cumulative []uint64, count uint64) float64 {
	if count == 0 || len(bounds) == 0 {
		return math.NaN()
	}
	rank := q * float64(count)
	for i, ub := range bounds {
		if float64(cumulative[i]) < rank {
			continue
		}
		if math.IsInf(ub, 1) {
			if i == 0 {
				return math.NaN()
			}
			return bounds[i-1]
		}
		lo, below := 0.0, uint64(0)
		if i > 0 {
			lo, below = bounds[i-1], cumulative[i-1]
		}
		in := cumulative[i] - below
		if in == 0 {
			return ub
		}
		return lo + (ub-lo)*(rank-float64(below))/float64(in)
	}
	return bounds[len(bounds)-1]
}

// Print writes the reports as status shows them.
func Print(w io.Writer, reports []Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  STAGE\tOBSERVED\tP50\tP99\t")
	for _, r := range reports {
		if r.Count == 0 {
			fmt.Fprintf(tw, "  %s\t0\t-\t-\t\n", r.Stage)
			continue
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t\n", r.Stage, r.Count, seconds(r.P50), seconds(r.P99))
	}
	tw.Flush()
	fmt.Fprintln(w, "  (since each process started; the dashboards show the last 5 minutes)")
}

func seconds(s float64) string {
	if math.IsNaN(s) {
		return "-"
	}
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

// URLs turns host:port addresses into /metrics URLs; full URLs stay.
func URLs(addrs []string) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if !strings.Contains(a, "://") {
			a = "http://" + a + "/metrics"
		}
		out = append(out, a)
	}
	return out
}
