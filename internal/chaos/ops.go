package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/shopgen"
	"github.com/shopstream/shopstream/streamer/recommender"
	"github.com/shopstream/shopstream/workflows"
)

// Outcomes of an operation, as its client saw it.
const (
	Accepted = "accepted" // it took effect
	Rejected = "rejected" // it did not
	Unknown  = "unknown"  // no answer: it may have
)

// inputs are what the schedule asked the pipeline to do: the oracle's
// half that is not derived from the emulation's seed.
type inputs struct {
	mu        sync.Mutex
	emulation workflows.EmulateShopInput
	posts     map[string]post   // by key
	deletes   map[string]string // key -> outcome
	bad       map[string][]byte // key -> value, every one acknowledged
	searches  []records.SearchPrompt
	searchIDs atomic.Int64
	filters   []string
}

type post struct {
	product records.Product
	outcome string
}

func newInputs() *inputs {
	return &inputs{posts: map[string]post{}, deletes: map[string]string{}, bad: map[string][]byte{}}
}

func (in *inputs) setEmulation(e workflows.EmulateShopInput) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.emulation = e
}

// generator makes the emulated products, as the emulation's batches do.
func (in *inputs) generator() (*shopgen.Generator, error) {
	in.mu.Lock()
	e := in.emulation
	in.mu.Unlock()
	// Now anchors only the timestamps, which the checker does not compare
	// with the oracle; keys and names depend on the seed and index alone.
	return shopgen.New(shopgen.Options{Seed: e.Seed, Shops: e.Shops, ImageBaseURL: e.ImageBaseURL, Now: time.Unix(0, 0)})
}

// op runs one user operation and records its outcome.
func (r *run) op(ctx context.Context, e Event) {
	switch e.Kind {
	case OpFilter:
		r.setFilter(ctx, e.Arg)
	case OpSearch:
		r.search(ctx, e.Arg, e.N)
	case OpPost:
		r.post(ctx, e.N)
	case OpDelete:
		r.delete(ctx, e.N)
	case OpBad:
		r.bad(ctx, e.N)
	}
}

// setFilter runs `shopstream filter set` (`filter clear` for ""), as an
// operator would; the StreamFilter workflow publishes each version.
func (r *run) setFilter(ctx context.Context, sub string) {
	args := []string{"filter", "set", sub}
	if sub == "" {
		args = []string{"filter", "clear"}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.in.Bin, args...)
	cmd.Env = r.env("filter")
	out, err := cmd.CombinedOutput()
	r.inputs.mu.Lock()
	r.inputs.filters = append(r.inputs.filters, sub)
	r.inputs.mu.Unlock()
	if err != nil {
		// A filter change that Temporal did not take is no violation: the
		// checker reads the versions the workflow published.
		r.note("filter set %q: %v: %s", sub, err, bytes.TrimSpace(out))
	}
}

// search produces a prompt for the name of emulated product n, as
// `shopstream search` does.
func (r *run) search(ctx context.Context, user string, n int) {
	g, err := r.inputs.generator()
	if err != nil {
		r.problem("search: %v", err)
		return
	}
	p := g.Product(uint64(n))
	r.searchFor(ctx, user, p.Name)
}

func (r *run) searchFor(ctx context.Context, user, query string) (searchedAt time.Time) {
	id := fmt.Sprintf("%s-search-%d", r.prefix, r.inputs.searchIDs.Add(1))
	sp := records.SearchPrompt{SearchID: id, UserID: user, Query: query, SearchedAt: time.Now().UTC().Truncate(time.Millisecond)}
	val, err := r.in.Serde.Encode(ctx, nil, r.topics.Find, &sp)
	if err != nil {
		r.problem("encode a search: %v", err)
		return sp.SearchedAt
	}
	if err := r.produce(ctx, &kgo.Record{Topic: r.topics.Find, Key: []byte(user), Value: val}); err != nil {
		r.problem("produce a search: %v", err)
		return sp.SearchedAt
	}
	r.inputs.mu.Lock()
	r.inputs.searches = append(r.inputs.searches, sp)
	r.inputs.mu.Unlock()
	return sp.SearchedAt
}

// produce writes records from the harness, retrying until Kafka takes
// them (a fault may be on): each is written once, by the idempotent
// producer.
func (r *run) produce(ctx context.Context, recs ...*kgo.Record) error {
	cl, err := r.in.Clients.NewClient(kgo.RecordRetries(1 << 30))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

// apiProduct is the body of POST /api/v1/products.
type apiProduct struct {
	MallID    string `json:"mallId"`
	ProductID string `json:"productId"`
	Title     string `json:"title"`
	Content   string `json:"content"`
	Price     string `json:"price"`
	ImageURL  string `json:"imageUrl"`
}

func (r *run) apiKey(n int) (mall, id string) {
	return "mall-api", fmt.Sprintf("%s-api-%d", r.prefix, n)
}

// post sends product n to the API, once: an answer it did not get leaves
// the outcome unknown.
func (r *run) post(ctx context.Context, n int) {
	mall, id := r.apiKey(n)
	body := apiProduct{MallID: mall, ProductID: id, Title: fmt.Sprintf("Chaos phone %d", n%3), Content: "posted during a chaos schedule",
		Price: fmt.Sprintf("%d.50", 10+n), ImageURL: fmt.Sprintf("%s/%s.png", r.in.ImageBase, id)}
	b, _ := json.Marshal(body)
	code, err := r.call(ctx, http.MethodPost, r.api+"/api/v1/products", b)
	p := records.Product{MallID: mall, ProductID: id, Name: body.Title}
	r.inputs.mu.Lock()
	defer r.inputs.mu.Unlock()
	r.inputs.posts[p.Key()] = post{product: p, outcome: outcome(code, err)}
}

// delete asks the API to delete posted product n.
func (r *run) delete(ctx context.Context, n int) {
	mall, id := r.apiKey(n)
	code, err := r.call(ctx, http.MethodDelete, r.api+"/api/v1/complete-products/"+id+"?mallId="+mall, nil)
	r.inputs.mu.Lock()
	defer r.inputs.mu.Unlock()
	r.inputs.deletes[records.ProductKey(mall, id)] = outcome(code, err)
}

func (r *run) call(ctx context.Context, method, url string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// outcome reads an HTTP answer: 202 took effect; another 4xx did not; no
// answer, or a 5xx (the API may have produced before it failed), may have.
func outcome(code int, err error) string {
	switch {
	case err != nil || code >= 500:
		return Unknown
	case code == http.StatusAccepted:
		return Accepted
	default:
		return Rejected
	}
}

// bad writes a record that is not a product at all: every consumer of the
// product topic must send it, and nothing else, to the dead-letter topic.
func (r *run) bad(ctx context.Context, n int) {
	key := fmt.Sprintf("%s/bad-%d", r.prefix, n)
	val := []byte(fmt.Sprintf("not avro: chaos schedule %d record %d", r.s.Seed, n))
	if err := r.produce(ctx, &kgo.Record{Topic: r.topics.Products, Key: []byte(key), Value: val}); err != nil {
		r.problem("produce a bad record: %v", err)
		return
	}
	r.inputs.mu.Lock()
	defer r.inputs.mu.Unlock()
	r.inputs.bad[key] = val
}

// finalSearches sends, after everything settled, one search per user for
// a name the filtered topic holds, so that the checker can compare the
// recommendations with the whole join.
func (r *run) finalSearches(ctx context.Context) error {
	names, err := r.filteredNames(ctx)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return r.quiesce(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, ConvergeTimeout)
	defer cancel()
	if err := r.waitTable(ctx); err != nil {
		return err
	}
	for i := range 3 {
		r.searchFor(ctx, fmt.Sprintf("user-%d", i), names[(int(r.s.Seed)+i)%len(names)])
	}
	return r.quiesce(ctx)
}

// waitTable waits until the recommender's table holds the last product of
// every partition of the filtered topic. The table is read outside any
// consumer group, so no lag shows how far it got, and under load it was
// seen behind the settled pipeline when the final searches came (seed 30:
// a product the streamer had committed was missing from a final search's
// recommendation). Each partition is probed with a search, by a user of
// its own, for the name of its last product, until the recommendation
// lists that product; the probes are searches like any other, so the
// checker holds them to the same join. A probe joined while the table
// still lacked its product is searched again: a recommendation changes
// only with a new search.
func (r *run) waitTable(ctx context.Context) error {
	l, err := readTopic(ctx, r.in.Clients, r.in.Admin, r.topics.Filtered)
	if err != nil {
		return err
	}
	// The newest live product of each partition: a product deleted later
	// (a tombstone) is not in the table.
	last := map[int32]*kgo.Record{}
	for _, rec := range l.latest() {
		if rec.Value != nil && (last[rec.Partition] == nil || rec.Offset > last[rec.Partition].Offset) {
			last[rec.Partition] = rec
		}
	}
	type probe struct {
		key, name string
		at        time.Time // when it was last searched
	}
	probes := map[string]*probe{} // by user
	for p, rec := range last {
		var prod records.Product
		if r.in.Serde.Decode(ctx, rec.Value, &prod) != nil {
			continue
		}
		pr := &probe{key: string(rec.Key), name: prod.Name}
		user := fmt.Sprintf("probe-%d", p)
		pr.at = r.searchFor(ctx, user, pr.name)
		probes[user] = pr
	}
	for {
		recs, err := readTopic(ctx, r.in.Clients, r.in.Admin, r.topics.Recommendations)
		if err != nil {
			return err
		}
		latest, waiting, why := recs.latest(), "", ""
		for user, pr := range probes {
			rc, ok := r.recommendation(ctx, latest[user])
			switch {
			case ok && recommends(rc, pr.key):
				continue
			case ok && !rc.LastSearchedAt.Before(pr.at):
				// Joined, but before the table had the product.
				why = "its search was joined without it, and searched again"
				pr.at = r.searchFor(ctx, user, pr.name)
			default:
				why = "its last search was not joined"
			}
			waiting = user
			break
		}
		if waiting == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the recommender's table did not catch up with %s within %s: %s was not recommended %s (%s)",
				r.topics.Filtered, ConvergeTimeout, waiting, probes[waiting].key, why)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// recommendation decodes a user's latest Recommendation record.
func (r *run) recommendation(ctx context.Context, rec *kgo.Record) (*records.Recommendation, bool) {
	var rc records.Recommendation
	if rec == nil || rec.Value == nil || r.in.Serde.Decode(ctx, rec.Value, &rc) != nil {
		return nil, false
	}
	return &rc, true
}

// recommends says whether a Recommendation lists key (or is full, when the
// name is shared by more products than it keeps).
func recommends(rc *records.Recommendation, key string) bool {
	if len(rc.Products) >= recommender.MaxProducts {
		return true
	}
	for _, p := range rc.Products {
		if records.ProductKey(p.MallID, p.ProductID) == key {
			return true
		}
	}
	return false
}

// note records something worth knowing that is no violation.
func (r *run) note(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, fmt.Sprintf(format, a...))
}
