package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/health"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/workflows"
)

// ConvergeTimeout bounds how long a schedule may take, after its faults
// end, to finish its work; longer is a liveness violation.
const ConvergeTimeout = 90 * time.Second

// Result is what one schedule did and what the checker found.
type Result struct {
	Schedule Schedule
	// Lost, Duplicated and AbortedReads count the records the checker
	// found missing, repeated, or read although their transaction was
	// aborted; Violations say each, and everything else that is wrong.
	Lost, Duplicated, AbortedReads int
	Violations                     []string
	// Crashes are component exits the harness did not cause, each with
	// the last line the process wrote (its error); Caused are the exits a
	// named case is meant to cause (see causedExit).
	Crashes, Caused []string
	// Stats are figures of the run: records per topic, restarts.
	Stats map[string]int
	// Notes are what the harness noticed that is no violation (a filter
	// change Temporal did not take while it restarted).
	Notes []string
	Took  time.Duration
}

// OK says the schedule ended with nothing wrong.
func (r Result) OK() bool { return len(r.Violations) == 0 }

// run is one schedule's state while it runs.
type run struct {
	in *Infra
	s  Schedule
	// timedOut counts, by component, its transactions the brokers aborted
	// at their timeout (known once the run has stopped).
	timedOut map[string]int
	dir      string
	prefix   string
	topics   records.Topics
	groups   map[string]string
	queue    string
	dsn      string
	api      string // the API's base URL
	blobs    string
	wfID     string
	http     *http.Client // for the API's posts and deletes

	mu        sync.Mutex
	procs     map[string]*proc
	extra     []*proc // replacement and scale-out instances
	inputs    *inputs
	emulated  time.Duration // how long converge waited for the emulation
	evictions int           // dead members the watchdog removed
	idle      int           // delays and drops that took no request
	problems  []string
	faultErrs []string
	downs     []downWindow // PostgreSQL and Temporal restarts
}

// Run runs one schedule on the shared infrastructure and checks it.
func (in *Infra) Run(ctx context.Context, s Schedule) Result {
	return in.newRun(s).execute(ctx, nil)
}

func (in *Infra) newRun(s Schedule) *run {
	return &run{in: in, s: s, prefix: fmt.Sprintf("c%d", s.Seed), procs: map[string]*proc{}, inputs: newInputs(),
		http: clients.NewHTTPClient(nil, 10*time.Second)}
}

// execute runs the schedule; beforeCheck, when set, runs once everything
// settled, before the checker reads the topics and tables.
func (r *run) execute(ctx context.Context, beforeCheck func(context.Context)) Result {
	t0 := time.Now()
	in, s := r.in, r.s
	res := Result{Schedule: s, Stats: map[string]int{}}
	defer in.faults.clear()
	phase := time.Now()
	lap := func(name string) {
		res.Stats["ms "+name] = int(time.Since(phase).Milliseconds())
		phase = time.Now()
	}
	if err := r.setUp(ctx); err != nil {
		r.stop()
		res.Violations = append(res.Violations, "set-up: "+err.Error())
		res.Took = time.Since(t0)
		return res
	}
	lap("set-up")
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go r.watchGroups(wctx)
	r.play(ctx)
	lap("play")
	err := r.converge(ctx)
	lap("converge")
	res.Stats["ms emulation"] = int(r.emulated.Milliseconds())
	if err == nil {
		err = r.finalSearches(ctx)
		lap("last searches")
	}
	if err != nil {
		res.Violations = append(res.Violations, err.Error())
		// What the groups looked like goes into events.log, and what every
		// process was doing into its log. What is still unread or open
		// tells a join that takes no prompts (a lag on the find topic)
		// from a table behind or a transaction left open.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		state, serr := r.lagState(sctx, health.Kafka{Admin: in.Admin, Kafka: in.Clients}, r.groupList(), r.topicList())
		cancel()
		r.event("not settled: %q (err %v)", state, serr)
		if state != "" {
			res.Notes = append(res.Notes, "what was not done at the end: "+state)
		}
		for _, c := range []string{Streamer, Recommender, Sink, Collector} {
			if g := in.Kafka.GroupInfo(r.groups[c]); g != nil {
				r.event("group %s: state %s, epoch %d, %d members", g.Group, g.State, g.Epoch, len(g.Members))
				for _, m := range g.Members {
					r.event("  member %s (%s) assigned %v", m.MemberID, m.ClientID, m.Assignment)
				}
				r.event("  commits %v", g.Commits)
			}
		}
		for _, p := range r.all() {
			p.dump()
		}
		time.Sleep(time.Second)
	}
	if err == nil {
		if beforeCheck != nil {
			beforeCheck(ctx)
		}
		c := r.check(ctx)
		res.Lost, res.Duplicated, res.AbortedReads = c.lost, c.duplicated, c.aborted
		res.Violations = append(res.Violations, c.violations...)
		for k, v := range c.stats {
			res.Stats[k] = v
		}
		lap("check")
	}
	res.Violations = append(res.Violations, r.faultErrs...)
	if err := r.stop(); err != nil {
		res.Violations = append(res.Violations, err.Error())
	}
	lap("stop")
	res.Stats["evictions"] = r.evictions
	r.mu.Lock()
	res.Stats["idle faults"] = r.idle
	r.mu.Unlock()
	prefixes := []string{r.prefix + "-"}
	for _, c := range Components() {
		prefixes = append(prefixes, r.prefix+"-"+c)
	}
	timeouts := in.txnTimeouts(prefixes...)
	res.Stats["txn timeouts"] = timeouts[0]
	r.timedOut = map[string]int{}
	for i, c := range Components() {
		r.timedOut[c] = timeouts[i+1]
	}
	res.Notes = append(res.Notes, r.problems...)
	for _, p := range r.all() {
		for _, x := range p.exits() {
			if r.causedExit(p.name, x) {
				res.Caused = append(res.Caused, x.text)
			} else {
				res.Crashes = append(res.Crashes, x.text)
			}
		}
		res.Stats["starts"] += p.starts
	}
	res.Took = time.Since(t0)
	return res
}

// downWindow is when a service the schedule restarted was not there.
type downWindow struct {
	kind     string // KindPostgresRestart or KindTemporalRestart
	from, to time.Time
}

// wasDown notes that the restart of kind, begun at from, is over.
func (r *run) wasDown(kind string, from time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.downs = append(r.downs, downWindow{kind: kind, from: from, to: time.Now()})
}

// restartGrace is how long after a service came back an exit for not
// reaching it still counts as caused by its restart: a process started
// again while the service was down spends its dial timeout (3s) failing.
const restartGrace = 5 * time.Second

// causedExit says whether a component's exit is what the schedule did to
// it:
//   - a streamer whose transaction the coordinator aborted
//     (commit-past-txn-timeout) or whose replacement fenced it (zombie)
//     fails its next transactional request and stops on that error;
//   - so does any component whose transaction the brokers aborted at its
//     timeout while the schedule delayed, dropped or paused that
//     component's requests (seed 27: a dropped Produce left the
//     streamer's transaction open past its timeout);
//   - a component started again (after a kill) just before or while the
//     schedule had PostgreSQL or Temporal down stops because it cannot
//     reach it.
//
// Either way its supervisor starts it again, as a real one would.
func (r *run) causedExit(name string, x exit) bool {
	txnLost := strings.Contains(x.text, "PRODUCER_FENCED") || strings.Contains(x.text, "INVALID_PRODUCER_EPOCH") ||
		strings.Contains(x.text, "INVALID_TXN_STATE")
	if strings.HasPrefix(name, Streamer) && txnLost && (r.s.Case == KindCommitPastTxnTO || r.s.Case == KindZombie) {
		return true
	}
	if txnLost && r.heldPastTimeout(name) {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.downs {
		// Only a process that was starting when the service went away
		// (seed 46: the sink's first connection met PostgreSQL shutting
		// down) or started while it was down; one that had been running
		// should have waited for it.
		if x.started.Before(d.from.Add(-restartGrace)) || x.started.After(d.to) || x.at.Before(d.from) || x.at.After(d.to.Add(restartGrace)) {
			continue
		}
		switch {
		case d.kind == KindTemporalRestart && strings.Contains(x.text, "cannot reach Temporal"):
			return true
		case d.kind == KindPostgresRestart && strings.Contains(x.text, "connect") && strings.Contains(x.text, r.dsnHost()):
			return true
		}
	}
	return false
}

// heldPastTimeout says whether the brokers aborted a transaction of the
// component name at its timeout (timedOut) while the schedule held that
// component's requests: a delay or drop of them, or a pause.
func (r *run) heldPastTimeout(name string) bool {
	if r.timedOut[name] == 0 {
		return false
	}
	for _, e := range r.s.Events {
		if (e.Kind == KindDelay || e.Kind == KindDrop || e.Kind == KindPause) && e.Target == name {
			return true
		}
	}
	return false
}

// dsnHost is the host:port of the schedule's PostgreSQL, as errors name it.
func (r *run) dsnHost() string {
	u, err := url.Parse(r.dsn)
	if err != nil {
		return r.dsn
	}
	return u.Host
}

func (r *run) all() []*proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*proc
	for _, name := range Components() {
		if p := r.procs[name]; p != nil {
			out = append(out, p)
		}
	}
	return append(out, r.extra...)
}

// setUp creates the schedule's database, topics and schemas and starts its
// processes.
func (r *run) setUp(ctx context.Context) error {
	r.dir = filepath.Join(r.in.Dir, r.prefix)
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	r.blobs = filepath.Join(r.dir, "blobs")
	t := records.DefaultTopics()
	for _, p := range []*string{&t.Products, &t.CompleteProducts, &t.Filtered, &t.Find, &t.Recommendations, &t.Filter, &t.FilterApplied, &t.DLQ} {
		*p = r.prefix + "_" + *p
	}
	r.topics = t
	r.groups = map[string]string{}
	for _, c := range []string{Streamer, Recommender, Sink, Collector} {
		r.groups[c] = r.prefix + "-" + c
	}
	r.queue = "chaos-" + r.prefix
	r.wfID = workflows.EmulateWorkflowIDPrefix + r.prefix
	r.terminateWorkflows(ctx)
	var err error
	if r.dsn, err = r.in.Database(ctx, r.prefix); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	apiAddr := ln.Addr().String()
	ln.Close()
	r.api = "http://" + apiAddr

	if r.s.Case == KindCommitPastTxnTO {
		r.in.faults.capTimeout(r.prefix+"-streamer", CommitPastTimeoutTxn)
	}
	if err := r.spawn(Worker, "worker"); err != nil {
		return err
	}
	boot := exec.CommandContext(ctx, r.in.Bin, "bootstrap", "--partitions", strconv.Itoa(int(r.s.Partitions)),
		"--replication-factor", strconv.Itoa(Brokers), "--only", "topics,schemas", "--timeout", "1m")
	boot.Env = r.env("bootstrap")
	if out, err := boot.CombinedOutput(); err != nil {
		return fmt.Errorf("bootstrap: %v\n%s", err, out)
	}
	imageHost := strings.TrimPrefix(strings.TrimSuffix(r.in.ImageBase, "/images"), "http://")
	for _, c := range []struct {
		name string
		args []string
	}{
		{Streamer, r.streamerArgs(0)},
		{Recommender, []string{"recommender", "--group", r.groups[Recommender], "--instance-id", "r0", "--wait-for-topics", "30s"}},
		{Sink, []string{"sink", "--group", r.groups[Sink], "--batch-size", "200"}},
		{Collector, []string{"collector", "--collector-group", r.groups[Collector], "--collector-transactional-id", r.prefix + "-collector-0",
			"--fetch-allow-hosts", imageHost, "--fetch-timeout", "3s"}},
		{API, []string{"api", "--api-addr", apiAddr, "--fetch-allow-hosts", imageHost}},
	} {
		if err := r.spawn(c.name, c.args...); err != nil {
			return err
		}
	}
	return r.waitAPI(ctx)
}

func (r *run) streamerArgs(n int) []string {
	return []string{"streamer", "--instance-id", fmt.Sprintf("%s-s%d", r.prefix, n), "--transactional-id", fmt.Sprintf("%s-streamer-%d", r.prefix, n),
		"--group", r.groups[Streamer], "--recommender", "off", "--max-batch", "200"}
}

// env is the environment of the schedule's processes: every address and
// topic, the schedule's task queue, and a short dial timeout so that a
// request a fault swallowed is retried within seconds.
func (r *run) env(name string) []string {
	dsn := r.dsn
	if name == Sink {
		// The sink's sessions are found by this name (KindSinkCopyKill).
		dsn += "&application_name=" + r.prefix + "-sink"
	}
	t := r.topics
	return append(os.Environ(),
		"KAFKA_BROKERS="+strings.Join(r.in.Brokers, ","),
		"SCHEMA_REGISTRY_URL="+r.in.Registry.URL(),
		"TEMPORAL_ADDRESS="+r.in.TemporalAddress(),
		"TEMPORAL_TASK_QUEUE="+r.queue,
		"DATABASE_DSN="+dsn,
		"SHOPSTREAM_DATA_DIR="+r.dir,
		"BLOB_URL="+r.blobs,
		"METRICS_ADDR=off",
		"SHOPSTREAM_DIAL_TIMEOUT=3s",
		"LOG_LEVEL=info",
		"PRODUCT_TOPIC="+t.Products, "PRODUCT_WITH_FULL_IMG_SET_TOPIC="+t.CompleteProducts,
		"PRODUCT_FILTERED_TOPIC="+t.Filtered, "PRODUCT_FIND_TOPIC="+t.Find, "PERSONAL_RECOM_TOPIC="+t.Recommendations,
		"FILTER_TOPIC="+t.Filter, "FILTER_APPLIED_TOPIC="+t.FilterApplied, "DLQ_TOPIC="+t.DLQ,
	)
}

func (r *run) spawn(name string, args ...string) error {
	p, err := newProc(name, r.in.Bin, args, r.env(name), filepath.Join(r.dir, name+".log"))
	if err != nil {
		return err
	}
	if err := p.start(); err != nil {
		return err
	}
	r.mu.Lock()
	r.procs[name] = p
	r.mu.Unlock()
	return nil
}

// spawnExtra starts another instance beside the schedule's own.
func (r *run) spawnExtra(name string, args ...string) (*proc, error) {
	p, err := newProc(name, r.in.Bin, args, r.env(name), filepath.Join(r.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	if err := p.start(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.extra = append(r.extra, p)
	r.mu.Unlock()
	return p, nil
}

func (r *run) proc(name string) *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.procs[name]
}

// StopGrace is how long a component may take to stop on SIGTERM: the
// bound the components document.
const StopGrace = 10 * time.Second

// stop stops every process and the schedule's workflows.
func (r *run) stop() error {
	err := stopAll(r.all(), StopGrace)
	r.terminateWorkflows(context.Background())
	return err
}

// terminateWorkflows ends the schedule's emulation and the filter
// workflow, whose fixed id would otherwise keep it on this schedule's task
// queue for the next one.
func (r *run) terminateWorkflows(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, id := range []string{r.wfID, workflows.StreamFilterWorkflowID} {
		_ = r.in.Temporal().TerminateWorkflow(ctx, id, "", "chaos schedule over")
	}
}

// event notes in the schedule's events.log what the harness did when, to
// read beside the processes' logs and kfake.log.
func (r *run) event(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(r.dir, "events.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
}

func (r *run) problem(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faultErrs = append(r.faultErrs, fmt.Sprintf(format, a...))
}

// startEmulation starts the EmulateShop workflow as `shopstream emulate`
// does, with a short heartbeat timeout so that a killed worker's batch is
// retried within the schedule.
func (r *run) startEmulation(ctx context.Context) error {
	in := workflows.EmulateShopInput{
		Count: r.s.Products, BatchSize: r.s.BatchSize, Shops: r.s.Shops, Seed: uint64(r.s.Seed) + 1, Rate: r.s.Rate,
		Concurrency: r.s.Concurrency, Topic: r.topics.Products, ImageBaseURL: r.in.ImageBase, HeartbeatTimeout: 2 * time.Second,
	}
	r.inputs.setEmulation(in)
	_, err := r.in.Temporal().ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: r.wfID, TaskQueue: r.queue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
	}, workflows.EmulateShop, in)
	if err != nil {
		return fmt.Errorf("start the emulation: %w", err)
	}
	return nil
}

// play starts the emulation and runs the events at their times; it
// returns once every fault has healed.
func (r *run) play(ctx context.Context) {
	t0 := time.Now()
	var wg sync.WaitGroup
	for _, e := range r.s.Events {
		if d := time.Until(t0.Add(e.At)); d > 0 {
			time.Sleep(d)
		}
		if e.At == 0 && e.Kind == OpFilter {
			// The first filter is set before the emulation starts.
			r.op(ctx, e)
			if err := r.startEmulation(ctx); err != nil {
				r.problem("%v", err)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.event("begin %s", e)
			if isOp(e.Kind) {
				r.op(ctx, e)
			} else {
				r.fault(ctx, e)
			}
			r.event("end %s", e)
		}()
	}
	wg.Wait()
}

// converge waits until the emulation is done and every consumer has read
// everything, with no transaction open anywhere.
func (r *run) converge(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, ConvergeTimeout)
	defer cancel()
	t0 := time.Now()
	if err := r.in.Temporal().GetWorkflow(ctx, r.wfID, "").Get(ctx, nil); err != nil {
		return fmt.Errorf("the emulation did not complete within %s of the faults' end: %w", ConvergeTimeout, err)
	}
	r.emulated = time.Since(t0)
	return r.quiesce(ctx)
}

// groupList lists a run's consumer groups.
func (r *run) groupList() []string {
	return []string{r.groups[Streamer], r.groups[Recommender], r.groups[Sink], r.groups[Collector]}
}

// quiesce waits until, twice in a row, no group has lag and no partition
// holds a transaction open.
func (r *run) quiesce(ctx context.Context) error {
	k := health.Kafka{Admin: r.in.Admin, Kafka: r.in.Clients}
	groups := r.groupList()
	t := r.topics
	topics := []string{t.Products, t.CompleteProducts, t.Filtered, t.Find, t.Recommendations, t.DLQ}
	calm := 0
	last := ""
	for {
		state, err := r.lagState(ctx, k, groups, topics)
		switch {
		case err == nil && state == "":
			calm++
			if calm == 2 {
				return nil
			}
		case err != nil:
			// A request cut short by the deadline says nothing of the
			// pipeline: keep what was last seen of it.
			calm = 0
			if last == "" || ctx.Err() == nil {
				last = err.Error()
			}
		default:
			calm, last = 0, state
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the pipeline did not settle within %s of the faults' end: %s", ConvergeTimeout, last)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// lagState says what is not done yet, "" when everything is.
func (r *run) lagState(ctx context.Context, k health.Kafka, groups, topics []string) (string, error) {
	txns, err := k.Transactions(ctx, topics, time.Now())
	if err != nil {
		return "", err
	}
	if len(txns.Open) > 0 || len(txns.Held) > 0 {
		var s []string
		for _, t := range txns.Open {
			s = append(s, fmt.Sprintf("%s/%d held by producer %d (%s)", t.Topic, t.Partition, t.ProducerID, t.TransactionalID))
		}
		return "open transactions: " + strings.Join(s, ", "), nil
	}
	lags, err := k.Lags(ctx, groups, nil)
	if err != nil {
		return "", err
	}
	var behind []string
	seen := map[string]bool{}
	for _, g := range lags {
		seen[g.Group] = true
		if g.Err != nil {
			behind = append(behind, fmt.Sprintf("%s: %v", g.Group, g.Err))
			continue
		}
		// Kafka reports a group's lag on its assigned partitions only while
		// it is Stable; in a rebalance only committed partitions count, so
		// a restarted member that has not committed yet showed no lag at
		// all (seed 26: prompts searched while the recommender rejoined
		// were never joined before the checker read the topics).
		if g.State != "Stable" {
			behind = append(behind, fmt.Sprintf("%s is %s", g.Group, g.State))
			continue
		}
		// The lag counts records, not transaction markers nor aborted
		// records: a partition that holds only those has nothing to read.
		if l := g.Lag(); l > 0 {
			var where []string
			for _, p := range g.Partitions {
				if p.Lag > 0 {
					where = append(where, fmt.Sprintf("%s/%d:%d", p.Topic, p.Partition, p.Lag))
				}
			}
			behind = append(behind, fmt.Sprintf("%s lags %d (%s)", g.Group, l, strings.Join(where, " ")))
		}
	}
	for _, g := range groups {
		if !seen[g] {
			behind = append(behind, g+" has not committed yet")
		}
	}
	// The collector commits the offsets of the products it parked (their
	// image hosts were slow) before they are complete: they are done only
	// once their rows leave collector_pending.
	parked, err := r.parked(ctx)
	if err != nil {
		return "", err
	}
	if parked > 0 {
		behind = append(behind, fmt.Sprintf("the collector has %d parked products", parked))
	}
	sort.Strings(behind)
	return strings.Join(behind, "; "), nil
}

// parked counts the products the collector parked and has not finished.
func (r *run) parked(ctx context.Context) (int, error) {
	conn, err := pgx.Connect(ctx, r.dsn)
	if err != nil {
		return 0, fmt.Errorf("count the collector's parked products: %w", err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM collector_pending").Scan(&n); err != nil {
		return 0, fmt.Errorf("count the collector's parked products: %w", err)
	}
	return n, nil
}

// waitAPI waits until the API answers.
func (r *run) waitAPI(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", strings.TrimPrefix(r.api, "http://"), time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("the product API did not listen within 30s")
}

// topicsOf lists a run's topics for the admin calls.
func (r *run) topicList() []string {
	t := r.topics
	return []string{t.Products, t.CompleteProducts, t.Filtered, t.Find, t.Recommendations, t.DLQ, t.Filter, t.FilterApplied}
}

var _ = kadm.TopicsSet{}
