package collector

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A batch waits Options.BatchWait for its products (with a negative one,
// for all of them, and nothing is parked). A product whose
// images take longer is parked: its record goes into PostgreSQL
// (collector_pending) in the batch's transaction, the batch commits its
// offset with the others, and the product goes on collecting in the
// background. A later batch writes its state and emits its output once it
// finishes, and forgets the parked record after that commit. A process
// that stops, or loses the partition, leaves the record parked; whoever
// owns the partition resumes it from PostgreSQL. So a mall whose images
// hang delays its own products only, and the offsets of everyone else's
// move on.
//
// Exactly once. A parked product's output is committed to Kafka in one
// transaction and its record deleted from PostgreSQL in another, so a crash
// can fall between the two. Three rules close that gap:
//
//   - Each job has a token, and the parked record names the token of the
//     job that may finish it (owner). Parking writes it; resuming claims
//     the record by writing a new one, which disowns every job before.
//   - A job finishes its record only as its owner: the product's state is
//     written under a lock on the owned record (apply), and after the
//     output is produced into the open transaction, the record is marked
//     with the output's topic, partition and offset, again only as its
//     owner (markEmitted). A job that lost its record aborts the
//     transaction instead of committing it.
//   - Whoever resumes a marked record reads that offset back from Kafka
//     (emittedOutputs): committed, the record is deleted, not collected
//     again; aborted, it is collected again; still open, it waits for the
//     next resume.
//
// So of two instances that both think they own a partition, only the one
// that owns the record when it marks it can commit, and a marked output is
// never produced a second time without first learning it aborted.

// resumeEvery is how often the parked records of the owned partitions are
// looked for, so that one failed on Kafka, the database or blob storage is
// tried again, and how long a poll waits while products collect.
const resumeEvery = 5 * time.Second

// job is one product collecting, maybe past the batch that read it.
type job struct {
	rec    *kgo.Record
	cancel context.CancelFunc
	done   chan struct{} // closed once res or err is set
	res    *result
	err    error
	// parked: the record is in collector_pending and its offset committed.
	parked bool
	// token names the job as the owner of its parked record.
	token string
}

func (j *job) finished() bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// start collects rec in the background, with prior as its state before.
// The job lives as long as Run, not as the batch.
// token is the owner token of a parked record (empty: a new one).
func (c *Collector) start(ctx context.Context, rec *kgo.Record, pr *prior, parked bool, token string) *job {
	jctx, cancel := context.WithCancel(ctx)
	if token == "" {
		token = c.newToken()
	}
	j := &job{rec: rec, cancel: cancel, done: make(chan struct{}), parked: parked, token: token}
	c.jobs[string(rec.Key)] = j
	go func() {
		j.res, j.err = c.process(jctx, rec, pr)
		close(j.done)
		c.signal()
	}()
	return j
}

// signal wakes Run's loop if it waits.
func (c *Collector) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// startAll starts a job for the last record of each key of a poll. A key
// whose record is already collecting (polled again after a rollback) keeps
// its job; an older record of the key (parked) is cancelled and replaced,
// and the images it stored become orphans unless the new one keeps them.
func (c *Collector) startAll(ctx context.Context, recs []*kgo.Record) ([]*job, error) {
	// Only the last record of each key matters: the product topic is a
	// changelog, and every version's work would be replaced by the next.
	last := make(map[string]*kgo.Record, len(recs))
	var order []string
	for _, r := range recs {
		k := string(r.Key)
		if _, seen := last[k]; !seen {
			order = append(order, k)
		}
		last[k] = r
	}
	var mine []*job
	var fresh []string
	leftover := map[string][]string{}
	for _, k := range order {
		r := last[k]
		if j := c.jobs[k]; j != nil {
			if j.rec.Partition == r.Partition && j.rec.Offset == r.Offset {
				mine = append(mine, j)
				continue
			}
			j.cancel()
			<-j.done // cancelled downloads end at once
			c.forget(j)
			if j.res != nil && j.res.change != nil {
				leftover[k] = j.res.change.fresh
			}
		}
		fresh = append(fresh, k)
	}
	priors, err := c.o.Store.load(ctx, fresh)
	if err != nil {
		return nil, err
	}
	for _, k := range fresh {
		pr := priors[k]
		pr.orphans = append(pr.orphans, leftover[k]...)
		mine = append(mine, c.start(ctx, last[k], pr, false, ""))
	}
	return mine, nil
}

// await waits until every job of mine finished, BatchWait passed, or ctx
// ended. It does not wait for a product of a mall that has products parked
// already: that mall's images are slow, and waiting for them again in every
// batch would make each batch cost BatchWait, and every other mall's
// products with it.
func (c *Collector) await(ctx context.Context, mine []*job) {
	slow := map[string]bool{}
	for _, j := range c.jobs {
		if j.parked {
			slow[mallOf(j.rec.Key)] = true
		}
	}
	var expired <-chan time.Time // nil without parking: wait for all
	if c.o.BatchWait > 0 {
		timer := time.NewTimer(c.o.BatchWait)
		defer timer.Stop()
		expired = timer.C
	}
	for _, j := range mine {
		if slow[mallOf(j.rec.Key)] {
			continue
		}
		select {
		case <-j.done:
		case <-expired:
			return
		case <-ctx.Done():
			return
		}
	}
}

// forget drops j from the jobs, cancelling it if it still runs.
func (c *Collector) forget(j *job) {
	j.cancel()
	if c.jobs[string(j.rec.Key)] == j {
		delete(c.jobs, string(j.rec.Key))
	}
}

// anyFinished says whether a parked product finished and waits for a batch.
func (c *Collector) anyFinished() bool {
	for _, j := range c.jobs {
		if j.parked && j.finished() {
			return true
		}
	}
	return false
}

// stopJobs cancels every job and waits for them: Run's last act.
func (c *Collector) stopJobs() {
	for _, j := range c.jobs {
		j.cancel()
	}
	for _, j := range c.jobs {
		<-j.done
	}
	clear(c.jobs)
	c.parked.Set(0)
}

// dropRevoked cancels the jobs of the partitions the group took away: their
// new owner resumes what was parked.
func (c *Collector) dropRevoked() {
	revoked := c.parts.takeRevoked()
	if len(revoked) == 0 {
		return
	}
	for _, j := range c.jobs {
		if slices.Contains(revoked, j.rec.Partition) {
			c.forget(j)
		}
	}
	c.parked.Set(float64(len(c.jobs)))
}

// newToken names a job, or a resume, as the owner of parked records.
func (c *Collector) newToken() string {
	c.tokens++
	return fmt.Sprintf("%s/%d", c.instance, c.tokens)
}

// resume claims the parked records of the owned partitions that no job
// collects here, and starts them: at once after an assignment, then every
// resumeEvery. A record whose output a crashed or displaced job marked is
// first looked up in Kafka: deleted if that output committed, started if
// it aborted, left for the next resume while its transaction is open.
func (c *Collector) resume(ctx context.Context) error {
	owned, due := c.parts.resumeDue(time.Now())
	if !due || len(owned) == 0 {
		return nil
	}
	running := make([]string, 0, len(c.jobs))
	for k := range c.jobs {
		running = append(running, k)
	}
	token := c.newToken()
	recs, err := c.o.Store.claim(ctx, c.o.Topics.Products, owned, token, running)
	if err != nil {
		return err
	}
	var outs []*kgo.Record
	for _, p := range recs {
		if p.out != nil {
			outs = append(outs, p.out)
		}
	}
	verdicts, err := c.emittedOutputs(ctx, outs)
	if err != nil {
		// The marked ones wait (their verdicts read as undecided); the
		// others need no Kafka to go on.
		c.o.Logger.Warn("look up parked products' output", "products", len(outs), "err", err)
	}
	var keys, wait []string
	var done []*kgo.Record
	byKey := map[string]*kgo.Record{}
	for _, p := range recs {
		k := string(p.rec.Key)
		if p.out != nil {
			switch verdicts[p.out] {
			case emitted:
				done = append(done, p.rec)
				continue
			case undecided:
				wait = append(wait, k)
				continue
			}
		}
		keys = append(keys, k)
		byKey[k] = p.rec
	}
	if len(done) > 0 {
		// Their output is committed: the crash fell between that commit
		// and this delete.
		if err := c.o.Store.unpark(ctx, c.o.Topics.Products, done); err != nil {
			return err
		}
		c.o.Logger.Info("parked products found emitted already; forgotten", "products", len(done))
	}
	if len(wait) > 0 {
		c.o.Logger.Info("parked products wait for their output's transaction to end", "products", len(wait))
	}
	if len(keys) == 0 {
		return nil
	}
	priors, err := c.o.Store.load(ctx, keys)
	if err != nil {
		return err
	}
	for _, k := range keys {
		c.start(ctx, byKey[k], priors[k], true, token)
	}
	c.parked.Set(float64(len(c.jobs)))
	c.o.Logger.Info("resumed parked products", "products", len(keys), "partitions", owned)
	return nil
}

// markUnparked marks the output of the parked products a batch finishes
// (results[i] is unparked[i]'s) in their parked records. If a job no longer
// owns its record, the batch must abort: the error says so, and the job is
// forgotten here.
func (c *Collector) markUnparked(ctx context.Context, results []*result, unparked []*job) error {
	var ems []emission
	for i, j := range unparked {
		if len(results[i].out) > 0 {
			ems = append(ems, emission{from: j.rec, owner: j.token, out: results[i].out[0]})
		}
	}
	lost, err := c.o.Store.markEmitted(ctx, c.o.Topics.Products, ems)
	if err != nil {
		return err
	}
	if len(lost) == 0 {
		return nil
	}
	gone := make(map[string]bool, len(lost))
	for _, k := range lost {
		gone[k] = true
	}
	for _, j := range unparked {
		if gone[string(j.rec.Key)] {
			c.forget(j)
		}
	}
	return fmt.Errorf("%d parked products taken over by another instance during the batch; aborting it", len(lost))
}

// dropLost removes from a batch the parked products whose jobs lost their
// records (apply wrote nothing of them): their results, jobs and changes.
func (c *Collector) dropLost(lost []string, results []*result, unparked []*job, changes []change) ([]*result, []*job, []change) {
	gone := make(map[string]bool, len(lost))
	for _, k := range lost {
		gone[k] = true
	}
	first := len(results) - len(unparked)
	keptR := results[:first:first]
	var keptJ []*job
	for i, j := range unparked {
		if gone[string(j.rec.Key)] {
			c.forget(j)
			continue
		}
		keptR = append(keptR, results[first+i])
		keptJ = append(keptJ, j)
	}
	var keptC []change
	for _, ch := range changes {
		if ch.finishes == nil || !gone[ch.key] {
			keptC = append(keptC, ch)
		}
	}
	return keptR, keptJ, keptC
}

// mallOf is the mall of a record key; a key that names none counts as its
// own.
func mallOf(key []byte) string {
	if mall, _, ok := splitKey(string(key)); ok {
		return mall
	}
	return string(key)
}

func recordsOf(jobs []*job) []*kgo.Record {
	out := make([]*kgo.Record, len(jobs))
	for i, j := range jobs {
		out[i] = j.rec
	}
	return out
}

// partitions are the partitions the group gave this instance, as its
// callbacks report them to Run.
type partitions struct {
	mu       sync.Mutex
	owned    map[int32]bool
	revoked  []int32
	resumeAt time.Time // zero: at once
}

func (p *partitions) assign(ps []int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range ps {
		p.owned[n] = true
	}
	p.resumeAt = time.Time{}
}

func (p *partitions) revoke(ps []int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range ps {
		delete(p.owned, n)
	}
	p.revoked = append(p.revoked, ps...)
}

func (p *partitions) takeRevoked() []int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.revoked
	p.revoked = nil
	return r
}

// resumeDue returns the owned partitions when it is time to look for
// parked records, and schedules the next look.
func (p *partitions) resumeDue(now time.Time) ([]int32, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Before(p.resumeAt) {
		return nil, false
	}
	p.resumeAt = now.Add(resumeEvery)
	out := make([]int32, 0, len(p.owned))
	for n := range p.owned {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, true
}
