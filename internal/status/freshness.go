package status

import (
	"context"
	"io"
	"time"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/freshness"
	"github.com/shopstream/shopstream/internal/process"
)

// freshnessSection is p50 and p99 per stage, read from the processes'
// /metrics: the histograms are where the observations are. Kafka keeps no
// time at which a record became visible, and the tables no time at which a
// row was written, so neither could say it.
type freshnessSection struct {
	Stages  []freshness.Report `json:"stages"`
	Scraped []string           `json:"scraped"`
}

func (f freshnessSection) print(w io.Writer) { freshness.Print(w, f.Stages) }

// freshnessStatus scrapes urls, or every shopstream process at its default
// port on this host (those that do not run are skipped).
func freshnessStatus(urls []string) check {
	return func(ctx context.Context, _ *process.Env, r *Report, _ time.Duration) {
		addrs := urls
		if len(addrs) == 0 {
			addrs = config.LocalMetricsAddrs()
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		reports, errs := freshness.Scrape(ctx, clients.NewHTTPClient(nil, 2*time.Second), freshness.URLs(addrs))
		sec := freshnessSection{Stages: reports, Scraped: []string{}}
		seen := map[string]bool{}
		for _, rep := range reports {
			for _, s := range rep.Sources {
				if !seen[s] {
					seen[s] = true
					sec.Scraped = append(sec.Scraped, s)
				}
			}
		}
		if len(urls) > 0 { // asked for by name: one that does not answer is a problem
			for _, err := range errs {
				r.problem("freshness: %v", err)
			}
		}
		r.Sections["freshness"] = sec
	}
}
