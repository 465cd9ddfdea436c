// Package status answers "is it working?" on one screen: each topic's end
// offsets and rate, each consumer group's lag (health's, the lag gauge's)
// and whether it drains, the filter's desired version against what each
// streamer applies, the sink's last write and row counts, and the last
// bootstrap and emulation runs. `shopstream status` prints it; its JSON
// form is the Report as is.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/shopstream/shopstream/internal/clients/temporalclient"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/filterctl"
	"github.com/shopstream/shopstream/internal/health"
	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/workflows"
)

// Report answers "is it working?"; `status --json` prints it as is.
type Report struct {
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems"`
	Topics   []Topic  `json:"topics"`
	Groups   []Group  `json:"groups"`
	Runs     []Run    `json:"runs"`
	// Sections that later components add (filter, sink, …), by name.
	Sections map[string]any `json:"sections,omitempty"`
}

// Topic is one topic's size and write rate.
type Topic struct {
	Name      string  `json:"name"`
	Records   int64   `json:"end_offset_sum"`
	PerSecond float64 `json:"records_per_second"`
}

// Group is one consumer group's state and lag.
type Group struct {
	Group   string `json:"group"`
	State   string `json:"state"`
	Members int    `json:"members"`
	// Lag is how many records the group has still to read
	// (health.GroupLag.Lag): what the lag gauge on /metrics says too.
	Lag int64 `json:"lag"`
	// Markers is the part of the raw offset lag that the group never
	// reads: transaction markers, aborted records, open transactions.
	Markers int64 `json:"markers"`
	// LagChange is the lag's change over the sampling interval: positive
	// means the group falls behind.
	LagChange int64            `json:"lag_change"`
	Topics    map[string]int64 `json:"lag_by_topic"`
}

// Run is the last run of a workflow type.
type Run struct {
	Workflow string    `json:"workflow"`
	ID       string    `json:"workflow_id"`
	RunID    string    `json:"run_id"`
	Status   string    `json:"status"`
	Started  time.Time `json:"started"`
	URL      string    `json:"url"`
}

func (r *Report) problem(format string, a ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
}

// check fills in one part of the report; later components add theirs to
// checks.
type check func(ctx context.Context, e *process.Env, r *Report, interval time.Duration)

func checks() []check {
	return []check{kafkaStatus, hangingStatus, temporalStatus, filterStatus, sinkStatus}
}

// Gather fills a report from every check, sampling rates and lag changes
// over interval; a check that cannot reach its service says so as a
// problem. Healthy says whether there is none. metricsURLs are the
// processes' /metrics to read freshness from (none: every shopstream
// process on this host at its default port).
func Gather(ctx context.Context, e *process.Env, interval time.Duration, metricsURLs ...string) *Report {
	r := &Report{Sections: map[string]any{}, Problems: []string{}}
	for _, c := range append(checks(), freshnessStatus(metricsURLs)) {
		c(ctx, e, r, interval)
	}
	r.Healthy = len(r.Problems) == 0
	return r
}

// PrintJSON writes the report as indented JSON.
func PrintJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func kafkaStatus(ctx context.Context, e *process.Env, r *Report, interval time.Duration) {
	// Connected here, so that an unreachable Kafka is a problem in the
	// report instead of an error before it prints anything.
	if _, err := e.ConnectKafka(ctx); err != nil {
		r.problem("%v", err)
		return
	}
	adm := e.Admin
	t := e.Config.Topics
	topics := []string{t.Products, t.CompleteProducts, t.Filtered, t.Find, t.Recommendations, t.DLQ, t.Filter, t.FilterApplied}
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		r.problem("list consumer groups: %v", err)
	}
	k := health.Kafka{Admin: adm, Kafka: e.Kafka}
	sample := func() (kadm.ListedOffsets, []health.GroupLag, bool) {
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err != nil {
			r.problem("list end offsets on %s: %v", strings.Join(e.Config.KafkaBrokers, ","), err)
			return nil, nil, false
		}
		lags, err := k.Lags(ctx, groups.Groups(), nil)
		if err != nil {
			r.problem("compute consumer lag: %v", err)
			if lags == nil {
				return nil, nil, false
			}
		}
		return ends, lags, true
	}
	ends0, lags0, ok := sample()
	if !ok {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(interval):
	}
	ends1, lags1, ok := sample()
	if !ok {
		return
	}
	for _, name := range topics {
		var before, after int64
		missing := true
		ends1.Each(func(o kadm.ListedOffset) {
			if o.Topic == name && o.Err == nil {
				after += o.Offset
				missing = false
			}
		})
		ends0.Each(func(o kadm.ListedOffset) {
			if o.Topic == name && o.Err == nil {
				before += o.Offset
			}
		})
		if missing {
			r.problem("topic %s does not exist: run `shopstream bootstrap`", name)
			continue
		}
		r.Topics = append(r.Topics, Topic{Name: name, Records: after, PerSecond: float64(after-before) / interval.Seconds()})
	}
	for _, ts := range r.Topics {
		if ts.Name == t.DLQ && ts.Records > 0 {
			r.problem("dead-letter topic %s holds %d records: see `shopstream dlq list`", ts.Name, ts.Records)
		}
	}
	prev := map[string]*health.GroupLag{}
	for i := range lags0 {
		prev[lags0[i].Group] = &lags0[i]
	}
	for i := range lags1 {
		l := &lags1[i]
		if p := l.Problem(prev[l.Group], interval); p != "" {
			r.problem("%s", p)
		}
		if l.Err != nil {
			continue
		}
		g := Group{Group: l.Group, State: l.State, Members: l.Members, Lag: l.Lag(), Markers: l.Raw() - l.Lag(), Topics: l.LagByTopic()}
		if p, ok := prev[l.Group]; ok {
			g.LagChange = g.Lag - p.Lag()
		}
		r.Groups = append(r.Groups, g)
	}
}

func temporalStatus(ctx context.Context, e *process.Env, r *Report, _ time.Duration) {
	if e.Temporal == nil {
		tc, err := temporalclient.Dial(ctx, temporalclient.FromConfig(e.Config, telemetry.AtLeast(e.Logger, slog.LevelError)))
		if err != nil {
			r.problem("%v", err)
			return
		}
		e.Temporal = tc
	}
	for _, wf := range []string{"Bootstrap", "EmulateShop", "Backfill", "ReplayDeadLetters"} {
		resp, err := e.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: e.Config.TemporalNamespace,
			PageSize:  1,
			Query:     fmt.Sprintf("WorkflowType = '%s'", wf),
		})
		if err != nil {
			r.problem("list %s runs: %v", wf, err)
			continue
		}
		for _, ex := range resp.GetExecutions() {
			rs := Run{
				Workflow: wf, ID: ex.GetExecution().GetWorkflowId(), RunID: ex.GetExecution().GetRunId(),
				Status:  strings.TrimPrefix(ex.GetStatus().String(), "WORKFLOW_EXECUTION_STATUS_"),
				Started: ex.GetStartTime().AsTime(),
			}
			rs.URL = e.Config.WorkflowURL(rs.ID, rs.RunID)
			switch ex.GetStatus() {
			case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED, enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT, enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
				r.problem("the last %s run %s ended %s: %s", wf, rs.ID, rs.Status, rs.URL)
			}
			r.Runs = append(r.Runs, rs)
		}
	}
}

// Print writes the report as one screen.
func Print(w io.Writer, r *Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tRECORDS\tRATE/s\t")
	for _, t := range r.Topics {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t\n", t.Name, t.Records, t.PerSecond)
	}
	fmt.Fprintln(tw, "\t\t\t")
	fmt.Fprintln(tw, "CONSUMER GROUP\tSTATE\tMEMBERS\tLAG\tCHANGE\t")
	sort.Slice(r.Groups, func(i, j int) bool { return r.Groups[i].Group < r.Groups[j].Group })
	for _, g := range r.Groups {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%+d\t\n", g.Group, g.State, g.Members, g.Lag, g.LagChange)
	}
	tw.Flush()
	for _, name := range sortedKeys(r.Sections) {
		fmt.Fprintf(w, "\n%s:\n", strings.ToUpper(name))
		if p, ok := r.Sections[name].(interface{ print(io.Writer) }); ok {
			p.print(w)
		} else {
			b, _ := json.MarshalIndent(r.Sections[name], "  ", "  ")
			fmt.Fprintf(w, "  %s\n", b)
		}
	}
	fmt.Fprintln(w)
	for _, run := range r.Runs {
		fmt.Fprintf(w, "last %s: %s (%s, started %s)\n  %s\n", run.Workflow, run.Status, run.ID, run.Started.Format(time.RFC3339), run.URL)
	}
	fmt.Fprintln(w)
	if len(r.Problems) == 0 {
		fmt.Fprintln(w, "healthy")
		return
	}
	fmt.Fprintln(w, "UNHEALTHY:")
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}

// filterSection is the filter's desired version against what each live
// streamer instance applied.
type filterSection struct {
	Desired   int64             `json:"desired_version"`
	Substring string            `json:"substring"`
	SetAt     time.Time         `json:"set_at"`
	Instances []health.Instance `json:"instances"`
}

func (f filterSection) print(w io.Writer) {
	fmt.Fprintf(w, "  desired v%d %q (set %s)\n", f.Desired, f.Substring, f.SetAt.Format(time.RFC3339))
	if len(f.Instances) == 0 {
		fmt.Fprintln(w, "  no streamer instance reports")
	}
	for _, v := range f.Instances {
		fmt.Fprintf(w, "  %-40s v%-5d %s\n", v.Instance, v.Version, v.State)
	}
}

func filterStatus(ctx context.Context, e *process.Env, r *Report, _ time.Duration) {
	if e.Client == nil || e.Temporal == nil {
		return // kafkaStatus and temporalStatus reported why
	}
	st, err := filterctl.Query(ctx, e)
	if errors.Is(err, filterctl.ErrNoWorkflow) {
		st = workflows.StreamFilterStatus{} // none set yet: v0, everything passes
	} else if err != nil {
		r.problem("%v", err)
		return
	}
	now := time.Now()
	f, err := filterctl.Instances(ctx, e, st.Desired, now)
	if err != nil {
		r.problem("read the applied filter versions: %v", err)
		return
	}
	r.Problems = append(r.Problems, f.Problems(now)...)
	r.Sections["filter"] = filterSection{Desired: st.Desired.Version, Substring: st.Desired.Substring, SetAt: st.Desired.SetAt, Instances: f.Instances}
}

// sinkSection is when the sink last wrote, from its offsets in PostgreSQL.
type sinkSection struct {
	LastWrite time.Time        `json:"last_write"`
	Rows      map[string]int64 `json:"rows"`
	// Parked counts the products the collector has committed but not
	// finished (their image hosts were slow): its group lag does not show
	// them.
	Parked       int64     `json:"collector_parked"`
	ParkedOldest time.Time `json:"collector_parked_oldest,omitzero"`
}

func (s sinkSection) print(w io.Writer) {
	if s.LastWrite.IsZero() {
		fmt.Fprintln(w, "  no write yet")
	} else {
		fmt.Fprintf(w, "  last write %s (%s ago)\n", s.LastWrite.Format(time.RFC3339), time.Since(s.LastWrite).Round(time.Second))
	}
	for _, t := range sortedKeys(s.Rows) {
		fmt.Fprintf(w, "  %-20s %d rows\n", t, s.Rows[t])
	}
	if s.Parked > 0 {
		fmt.Fprintf(w, "  collector parked     %d products whose images are still being fetched (oldest since %s)\n", s.Parked, s.ParkedOldest.Format(time.RFC3339))
	}
}

func sinkStatus(ctx context.Context, e *process.Env, r *Report, _ time.Duration) {
	if e.Config.DatabaseDSN == "" {
		dsn, err := process.DevDSN(e.Config.DataDir)
		if err != nil {
			return // no database configured: nothing to report
		}
		e.Config.DatabaseDSN = dsn // the dev stack's, as `shopstream sink` finds it
	}
	qctx, cancel := context.WithTimeout(ctx, e.Config.DialTimeout)
	defer cancel()
	// Opened as every command opens it, migrations applied, so the tables
	// below exist even before the sink first ran.
	db, err := e.Database(qctx)
	if err != nil {
		r.problem("cannot open the sink's PostgreSQL at %s: %v", config.Mask(e.Config.DatabaseDSN), err)
		return
	}
	sec := sinkSection{Rows: map[string]int64{}}
	var last *time.Time
	if err := db.Pool.QueryRow(qctx, `SELECT max(updated_at) FROM sink_offsets`).Scan(&last); err != nil {
		r.problem("read the sink's offsets: %v", err)
		return
	}
	if last != nil {
		sec.LastWrite = *last
	}
	for _, t := range []string{"products", "filtered_products", "complete_products", "searches", "recommendations"} {
		var n int64
		if err := db.Pool.QueryRow(qctx, "SELECT count(*) FROM "+t).Scan(&n); err != nil {
			r.problem("count rows of %s: %v", t, err)
			return
		}
		sec.Rows[t] = n
	}
	var oldest *time.Time
	if err := db.Pool.QueryRow(qctx, `SELECT count(*), min(parked_at) FROM collector_pending`).Scan(&sec.Parked, &oldest); err != nil {
		r.problem("count the collector's parked products: %v", err)
		return
	}
	if oldest != nil {
		sec.ParkedOldest = *oldest
	}
	r.Sections["sink"] = sec
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
