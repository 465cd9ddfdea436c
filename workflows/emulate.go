package workflows

import (
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Activity names implemented by activities.Emulate.
const (
	ActivityEmulateBatch   = "EmulateBatch"
	ActivityEmulateCleanup = "EmulateCleanup"
)

// QueryEmulateProgress answers with an EmulateProgress.
const QueryEmulateProgress = "emulate-progress"

// EmulateWorkflowIDPrefix starts the id of every EmulateShop run and
// schedule, so `emulate schedules` can tell them from other work.
const EmulateWorkflowIDPrefix = "shopstream-emulate-"

// Defaults and bounds of EmulateShopInput.
const (
	DefaultEmulateShops       = 10
	MaxEmulateShops           = 100_000
	DefaultEmulateConcurrency = 4
	MaxEmulateConcurrency     = 64
	// MaxEmulateBatchesPerRun bounds one run's history (about six events a
	// batch); the workflow continues as new after that many batches.
	MaxEmulateBatchesPerRun = 500
	// maxBatchDuration bounds how long one rate-limited batch may take: its
	// records stay in one open Kafka transaction until it ends.
	maxBatchDuration = 10 * time.Minute
)

// EmulateShopInput is what `shopstream emulate` asks for.
type EmulateShopInput struct {
	// Count is how many products to publish, exactly.
	Count int64
	// BatchSize is how many products one activity produces in one Kafka
	// transaction; 0 picks DefaultEmulateBatchSize.
	BatchSize int64
	// Shops spreads products over this many malls (0: DefaultEmulateShops).
	Shops int
	// Seed makes the products; 0 derives it from the workflow id, so every
	// run differs but a retried batch repeats itself exactly.
	Seed uint64
	// Rate caps records a second over the whole run; 0 is as fast as Kafka
	// takes them.
	Rate float64
	// Concurrency is how many batches run at once (0: the default).
	Concurrency int
	// Topic receives the products.
	Topic string
	// ImageBaseURL prefixes the products' image URLs.
	ImageBaseURL string
	// HeartbeatTimeout is how soon a batch whose worker died is retried
	// elsewhere (0: 10s). It also bounds how soon a running batch hears of a
	// cancel: the SDK sends heartbeats at most every 0.8 of it.
	HeartbeatTimeout time.Duration

	// Resume is set by the workflow itself when it continues as new.
	Resume EmulateResume
}

// EmulateResume carries a run's progress into the next run of the chain.
type EmulateResume struct {
	NextBatch   int64
	BatchesDone int64
	Committed   int64
	Recovered   int64
	Partitions  map[int32]int64
	StartedAt   time.Time
	// ProductTime anchors the products' created_at and updated_at, fixed at
	// the first run so every retry generates the same products.
	ProductTime time.Time
	Runs        int
}

// EmulateBatchInput asks one activity to produce records [First, First+Count).
type EmulateBatchInput struct {
	WorkflowID string
	Batch      int64
	// Slot is which of the run's Concurrency lanes the batch runs in: no two
	// batches in flight share one, so a lane's Kafka transactional id (and
	// the producer a worker keeps for it) serves one batch at a time.
	Slot         int
	First        int64
	Count        int64
	Topic        string
	Seed         uint64
	Shops        int
	ImageBaseURL string
	ProductTime  time.Time
	// Rate caps this batch's records a second (0: no cap).
	Rate float64
}

// EmulateBatchResult says what one batch committed.
type EmulateBatchResult struct {
	Batch   int64
	Records int64
	// Partitions maps each partition the batch wrote to the offset after its
	// last record there.
	Partitions map[int32]int64
	// AlreadyCommitted is set when an earlier attempt had committed the batch
	// but did not live to report it; nothing was produced again.
	AlreadyCommitted bool
}

// EmulateCleanupInput names the batches whose commit markers can go.
type EmulateCleanupInput struct {
	WorkflowID string
	FirstBatch int64
	EndBatch   int64
}

// EmulateCleanupResult says how many markers were removed.
type EmulateCleanupResult struct {
	Deleted int
}

// EmulateProgress is what the progress query answers.
type EmulateProgress struct {
	Count       int64
	Committed   int64
	Batches     int64
	BatchesDone int64
	Running     int
	// Recovered counts batches a retry found already committed.
	Recovered int64
	Topic     string
	Seed      uint64
	StartedAt time.Time
	Runs      int
	Done      bool
}

// EmulateShopResult is the finished run.
type EmulateShopResult struct {
	Count      int64
	Committed  int64
	Batches    int64
	Recovered  int64
	Topic      string
	Seed       uint64
	StartedAt  time.Time
	FinishedAt time.Time
	// Partitions maps each partition to the offset after the run's last
	// record there.
	Partitions map[int32]int64
	Runs       int
}

// DefaultEmulateBatchSize makes a million records a hundred batches, and
// never fewer than 5000 records a batch: each batch costs a Kafka client, a
// transaction and a Temporal round trip (~20 ms on the dev stack), so
// smaller ones spend more time on that than on records (100000 products in
// batches of 1000 ran at 51k/s, of 5000 at 135k/s). With a rate a batch is
// about five seconds of records, so they become visible steadily. Runs in
// flight replay this: change it behind workflow.GetVersion (the replay test
// fails otherwise).
func DefaultEmulateBatchSize(count int64, rate float64) int64 {
	if rate > 0 {
		return clamp(int64(rate*5), 1, 50_000)
	}
	return clamp((count+99)/100, 5000, 50_000)
}

// EmulateSeed derives the seed of a run without --seed from its workflow id.
func EmulateSeed(workflowID string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(workflowID))
	if s := h.Sum64(); s != 0 {
		return s
	}
	return 1
}

// Validate checks the input before anything runs.
func (in EmulateShopInput) Validate() error {
	switch {
	case in.Count < 1:
		return fmt.Errorf("count %d: want at least 1", in.Count)
	case in.BatchSize < 0:
		return fmt.Errorf("batch size %d: want at least 1, or 0 for the default", in.BatchSize)
	case in.Shops < 0 || in.Shops > MaxEmulateShops:
		return fmt.Errorf("shops %d: want 1 to %d", in.Shops, MaxEmulateShops)
	case in.Rate < 0:
		return fmt.Errorf("rate %g: want 0 (no limit) or more records a second", in.Rate)
	case in.Concurrency < 0 || in.Concurrency > MaxEmulateConcurrency:
		return fmt.Errorf("concurrency %d: want 1 to %d", in.Concurrency, MaxEmulateConcurrency)
	case in.Topic == "":
		return errors.New("no topic to emulate into")
	case in.ImageBaseURL == "":
		return errors.New("no image base URL")
	case in.HeartbeatTimeout < 0:
		return fmt.Errorf("heartbeat timeout %s: want a positive duration", in.HeartbeatTimeout)
	}
	if in.Rate > 0 {
		batch, per := in.batchSize(), in.batchRate()
		if d := time.Duration(float64(batch) / per * float64(time.Second)); d > maxBatchDuration {
			return fmt.Errorf("a batch of %d records at %.4g records a second takes %s, longer than a Kafka transaction may stay open (%s): lower the batch size or raise the rate",
				batch, per, d.Round(time.Second), maxBatchDuration)
		}
	}
	return nil
}

func (in EmulateShopInput) batchSize() int64 {
	if in.BatchSize > 0 {
		return in.BatchSize
	}
	return DefaultEmulateBatchSize(in.Count, in.Rate)
}

func (in EmulateShopInput) batches() int64 {
	b := in.batchSize()
	return (in.Count + b - 1) / b
}

func (in EmulateShopInput) concurrency() int {
	if in.Concurrency > 0 {
		return in.Concurrency
	}
	return DefaultEmulateConcurrency
}

// batchRate shares the run's rate among the batches that run at once.
func (in EmulateShopInput) batchRate() float64 {
	if in.Rate <= 0 {
		return 0
	}
	return in.Rate / float64(min(int64(in.concurrency()), in.batches()))
}

// EmulateShop publishes exactly Count products: it splits them into batches
// and runs at most Concurrency batch activities at a time, each producing its
// records in one Kafka transaction. A retried batch generates the same
// records and never commits twice (the activity detects an earlier commit).
// After MaxEmulateBatchesPerRun batches, or when the server suggests it, the
// workflow continues as new so its history stays bounded.
func EmulateShop(ctx workflow.Context, in EmulateShopInput) (EmulateShopResult, error) {
	if err := in.Validate(); err != nil {
		return EmulateShopResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, nil)
	}
	info := workflow.GetInfo(ctx)
	logger := workflow.GetLogger(ctx)
	st := in.Resume
	if st.StartedAt.IsZero() {
		now := workflow.Now(ctx)
		st.StartedAt, st.ProductTime = now, now.Truncate(time.Millisecond)
	}
	if st.Partitions == nil {
		st.Partitions = map[int32]int64{}
	}
	st.Runs++
	if in.Seed == 0 {
		in.Seed = EmulateSeed(info.WorkflowExecution.ID)
	}
	if in.Shops == 0 {
		in.Shops = DefaultEmulateShops
	}
	batchSize, total, conc := in.batchSize(), in.batches(), in.concurrency()
	running := 0
	if err := workflow.SetQueryHandler(ctx, QueryEmulateProgress, func() (EmulateProgress, error) {
		return EmulateProgress{
			Count: in.Count, Committed: st.Committed, Batches: total, BatchesDone: st.BatchesDone,
			Running: running, Recovered: st.Recovered, Topic: in.Topic, Seed: in.Seed,
			StartedAt: st.StartedAt, Runs: st.Runs, Done: st.Committed >= in.Count,
		}, nil
	}); err != nil {
		return EmulateShopResult{}, err
	}

	heartbeat := in.HeartbeatTimeout
	if heartbeat == 0 {
		heartbeat = 10 * time.Second
	}
	startToClose := 5 * time.Minute
	if r := in.batchRate(); r > 0 {
		startToClose += time.Duration(2 * float64(batchSize) / r * float64(time.Second))
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: startToClose,
		HeartbeatTimeout:    heartbeat,
		WaitForCancellation: true,
		// No attempt limit: a broker that went away comes back, and the run
		// finishes then; `emulate cancel` ends it otherwise.
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Second,
			NonRetryableErrorTypes: []string{ErrTypeInvalidInput},
		},
	})

	sel := workflow.NewSelector(ctx)
	runFirst, next := st.NextBatch, st.NextBatch
	free := make([]int, conc) // slots not in use, lowest last
	for i := range free {
		free[i] = conc - 1 - i
	}
	var failed error
	for {
		for failed == nil && ctx.Err() == nil && running < conc && next < total &&
			next-runFirst < MaxEmulateBatchesPerRun && !info.GetContinueAsNewSuggested() {
			b := next
			first := b * batchSize
			slot := free[len(free)-1]
			free = free[:len(free)-1]
			bin := EmulateBatchInput{
				WorkflowID: info.WorkflowExecution.ID, Batch: b, Slot: slot, First: first, Count: min(batchSize, in.Count-first),
				Topic: in.Topic, Seed: in.Seed, Shops: in.Shops, ImageBaseURL: in.ImageBaseURL,
				ProductTime: st.ProductTime, Rate: in.batchRate(),
			}
			sel.AddFuture(workflow.ExecuteActivity(actx, ActivityEmulateBatch, bin), func(f workflow.Future) {
				running--
				free = append(free, slot)
				var r EmulateBatchResult
				if err := f.Get(ctx, &r); err != nil {
					if failed == nil {
						failed = fmt.Errorf("batch %d (records %d to %d): %w", b, first, first+bin.Count-1, err)
					}
					return
				}
				st.Committed += r.Records
				st.BatchesDone++
				if r.AlreadyCommitted {
					st.Recovered++
				}
				for p, off := range r.Partitions {
					if off > st.Partitions[p] {
						st.Partitions[p] = off
					}
				}
			})
			running++
			next++
		}
		if running == 0 {
			break
		}
		sel.Select(ctx)
	}
	// Every batch before next has ended: committed, or failed or canceled.
	st.NextBatch = next
	cleanup(ctx, info.WorkflowExecution.ID, runFirst, next)

	if ctx.Err() != nil {
		logger.Info("emulation canceled", "committed", st.Committed, "count", in.Count)
		return EmulateShopResult{}, ctx.Err()
	}
	if failed != nil {
		return EmulateShopResult{}, failed
	}
	if next < total {
		logger.Info("emulation continues as new", "next_batch", next, "batches", total, "committed", st.Committed)
		in.Resume = st
		return EmulateShopResult{}, workflow.NewContinueAsNewError(ctx, EmulateShop, in)
	}
	return EmulateShopResult{
		Count: in.Count, Committed: st.Committed, Batches: total, Recovered: st.Recovered,
		Topic: in.Topic, Seed: in.Seed, StartedAt: st.StartedAt, FinishedAt: workflow.Now(ctx),
		Partitions: st.Partitions, Runs: st.Runs,
	}, nil
}

// cleanup removes the commit markers of batches [first, end).
func cleanup(ctx workflow.Context, workflowID string, first, end int64) {
	if end > first {
		cleanupMarkers(ctx, ActivityEmulateCleanup, EmulateCleanupInput{WorkflowID: workflowID, FirstBatch: first, EndBatch: end}, int(end-first))
	}
}

func clamp(v, lo, hi int64) int64 {
	return max(lo, min(v, hi))
}
