package collector

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// With Options.BatchWait set, a batch waits that long for its products
// (without it, for all of them, and nothing is parked). A product whose
// images take longer is parked: its record goes into PostgreSQL (collector_pending) in
// the batch's transaction, the batch commits its offset with the others,
// and the product goes on collecting in the background. A later batch
// writes its state and emits its output once it finishes, and forgets the
// parked record after that commit. A process that stops, or loses the
// partition, leaves the record parked; whoever owns the partition resumes
// it from PostgreSQL. So a mall whose images hang delays its own products
// only, and the offsets of everyone else's move on.

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
func (c *Collector) start(ctx context.Context, rec *kgo.Record, pr *prior, parked bool) *job {
	jctx, cancel := context.WithCancel(ctx)
	j := &job{rec: rec, cancel: cancel, done: make(chan struct{}), parked: parked}
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
		mine = append(mine, c.start(ctx, last[k], pr, false))
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

// resume starts the parked records of the owned partitions that no job
// collects: at once after an assignment, then every resumeEvery.
func (c *Collector) resume(ctx context.Context) error {
	owned, due := c.parts.resumeDue(time.Now())
	if !due || len(owned) == 0 {
		return nil
	}
	recs, err := c.o.Store.pending(ctx, c.o.Topics.Products, owned)
	if err != nil {
		return err
	}
	var keys []string
	byKey := map[string]*kgo.Record{}
	for _, r := range recs {
		if c.jobs[string(r.Key)] == nil {
			keys = append(keys, string(r.Key))
			byKey[string(r.Key)] = r
		}
	}
	if len(keys) == 0 {
		return nil
	}
	priors, err := c.o.Store.load(ctx, keys)
	if err != nil {
		return err
	}
	for _, k := range keys {
		c.start(ctx, byKey[k], priors[k], true)
	}
	c.parked.Set(float64(len(c.jobs)))
	c.o.Logger.Info("resumed parked products", "products", len(keys), "partitions", owned)
	return nil
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
