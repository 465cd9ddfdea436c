package search

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/freshness"
	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
)

// userPartition is the partition of the recommendations topic that holds
// the user: the one Kafka's default (murmur2) partitioner picks for the key,
// as `shopstream search` and ksqlDB do. The built-in recommender writes to
// the partition of the user's prompt, the same one when prompts are keyed
// the same way.
func userPartition(ctx context.Context, e *process.Env, user string) (int32, int, error) {
	topic := e.Config.Topics.Recommendations
	details, err := e.Admin.ListTopics(ctx, topic)
	if err != nil {
		return 0, 0, fmt.Errorf("describe topic %s: %w", topic, err)
	}
	d, ok := details[topic]
	if !ok || d.Err != nil || len(d.Partitions) == 0 {
		return 0, 0, fmt.Errorf("topic %s does not exist: create it with `shopstream bootstrap`", topic)
	}
	n := len(d.Partitions)
	p := kgo.StickyKeyPartitioner(nil).ForTopic(topic).Partition(&kgo.Record{Key: []byte(user)}, n)
	return int32(p), n, nil
}

// latestRec is what reading a user's records found.
type latestRec struct {
	rec     *records.Recommendation // nil: none, or deleted
	deleted bool
	// rd has read up to the last stable offsets; it goes on reading for
	// updates. The caller closes it.
	rd *topicread.Reader
}

// readLatest reads the user's partition up to its last stable offset; when
// the user is not there (prompts keyed by another partitioner), it reads
// the other partitions too.
func readLatest(ctx context.Context, e *process.Env, user string) (*latestRec, error) {
	p, n, err := userPartition(ctx, e, user)
	if err != nil {
		return nil, err
	}
	res, err := readPartitions(ctx, e, user, []int32{p})
	if err != nil || res.rec != nil || res.deleted {
		return res, err
	}
	var others []int32
	for q := range int32(n) {
		if q != p {
			others = append(others, q)
		}
	}
	if len(others) == 0 {
		return res, nil
	}
	more, err := readPartitions(ctx, e, user, others)
	if err != nil {
		res.rd.Close()
		return nil, err
	}
	if more.rec == nil && !more.deleted {
		more.rd.Close()
		return res, nil // follow the user's own partition
	}
	res.rd.Close()
	return more, nil
}

func readPartitions(ctx context.Context, e *process.Env, user string, parts []int32) (*latestRec, error) {
	topic := e.Config.Topics.Recommendations
	rd, err := topicread.Open(ctx, e.Kafka, topic, topicread.Options{Partitions: parts})
	if err != nil {
		return nil, err
	}
	var latest *kgo.Record
	err = rd.CatchUp(ctx, func(r *kgo.Record) error {
		if string(r.Key) == user {
			latest = r
		}
		return nil
	})
	res := &latestRec{rd: rd}
	switch {
	case err != nil:
	case latest == nil:
		return res, nil
	case latest.Value == nil:
		res.deleted = true
		return res, nil
	default:
		res.rec = new(records.Recommendation)
		if err = e.Serde.Decode(ctx, latest.Value, res.rec); err != nil {
			err = fmt.Errorf("decode the recommendations of %s (%s partition %d offset %d): %w", user, topic, latest.Partition, latest.Offset, err)
		}
	}
	if err != nil {
		rd.Close()
		return nil, err
	}
	return res, nil
}

// ShowRecs prints the user's current recommendations (committed records
// only), as JSON when asJSON; with follow it then prints each update until
// ctx ends.
func ShowRecs(ctx context.Context, e *process.Env, user string, follow, asJSON bool, w io.Writer) error {
	res, err := readLatest(ctx, e, user)
	if err != nil {
		return err
	}
	defer res.rd.Close()
	printRecs(w, user, res.rec, res.deleted, asJSON)
	if !follow {
		return nil
	}
	// Follow ends without an error on Ctrl-C.
	return res.rd.Follow(ctx, func(r *kgo.Record) error {
		if string(r.Key) != user {
			return nil
		}
		if r.Value == nil {
			printRecs(w, user, nil, true, asJSON)
			return nil
		}
		rec := new(records.Recommendation)
		if err := e.Serde.Decode(ctx, r.Value, rec); err != nil {
			return fmt.Errorf("decode the recommendations of %s (partition %d offset %d): %w", user, r.Partition, r.Offset, err)
		}
		printRecs(w, user, rec, false, asJSON)
		return nil
	})
}

func printRecs(w io.Writer, user string, rec *records.Recommendation, deleted, asJSON bool) {
	if asJSON {
		if rec == nil {
			fmt.Fprintln(w, "null")
			return
		}
		b, _ := json.Marshal(freshness.Aged(rec, time.Now())) // plain strings, numbers and times: cannot fail
		fmt.Fprintln(w, string(b))
		return
	}
	switch {
	case deleted:
		fmt.Fprintf(w, "%s: recommendations deleted\n", user)
		return
	case rec == nil:
		fmt.Fprintf(w, "%s has no recommendations yet: search with `shopstream search --user %s \"<product name>\"`\n", user, user)
		return
	}
	fmt.Fprintf(w, "%s: %d recommended product(s); last search %q at %s\n", user, len(rec.Products), rec.LastQuery, fmtTime(rec.LastSearchedAt))
	printProducts(w, rec.Products)
}

func printProducts(w io.Writer, ps []records.RecommendedProduct) {
	if len(ps) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tPRODUCT\tNAME\tPRICE\tSEARCH\tRECOMMENDED AT")
	for i, p := range ps {
		fmt.Fprintf(tw, "  %d\t%s/%s\t%s\t%s %s\t%s\t%s\n", i+1, p.MallID, p.ProductID, p.Name, p.Price.Amount, p.Price.Currency, p.SearchID, fmtTime(p.RecommendedAt))
	}
	tw.Flush()
}

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000 MST") }

// recsWatcher watches the user's partition from its end, for --wait.
type recsWatcher struct {
	e    *process.Env
	user string
	rd   *topicread.Reader
}

func newRecsWatcher(ctx context.Context, e *process.Env, user string) (*recsWatcher, error) {
	p, _, err := userPartition(ctx, e, user)
	if err != nil {
		return nil, err
	}
	rd, err := topicread.Open(ctx, e.Kafka, e.Config.Topics.Recommendations, topicread.Options{Partitions: []int32{p}, FromEnd: true})
	if err != nil {
		return nil, err
	}
	return &recsWatcher{e: e, user: user, rd: rd}, nil
}

func (w *recsWatcher) close() { w.rd.Close() }

// waitFor prints, for each prompt, the products its search recommended,
// once the user's Recommendation shows the prompt as the last search.
func (w *recsWatcher) waitFor(ctx context.Context, sent []*records.SearchPrompt, timeout time.Duration, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	next := 0
	for next < len(sent) {
		recs, err := w.rd.Poll(ctx)
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("no recommendation for search %s arrived within %s: is a recommender running "+
					"(`shopstream dev`, `shopstream recommender`, or ksqlDB with the migrations applied)?", sent[next].SearchID, timeout)
			}
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("wait for recommendations: %w", err)
		}
		for _, r := range recs {
			if next == len(sent) || string(r.Key) != w.user || r.Value == nil {
				continue
			}
			var rec records.Recommendation
			if err := w.e.Serde.Decode(ctx, r.Value, &rec); err != nil {
				return fmt.Errorf("decode the recommendations of %s: %w", w.user, err)
			}
			// Each prompt produces one record, in order. Should one be
			// missed, the next record answers for it too: its products
			// still carry the search ids that produced them.
			for i := next; i < len(sent); i++ {
				p := sent[i]
				if rec.LastQuery == p.Query && rec.LastSearchedAt.Equal(p.SearchedAt) {
					for ; next <= i; next++ {
						printSearchResult(out, sent[next], &rec)
					}
					break
				}
			}
		}
	}
	return nil
}

func printSearchResult(w io.Writer, p *records.SearchPrompt, rec *records.Recommendation) {
	var mine []records.RecommendedProduct
	for _, rp := range rec.Products {
		if rp.SearchID == p.SearchID {
			mine = append(mine, rp)
		}
	}
	if len(mine) == 0 {
		fmt.Fprintf(w, "search %s: no filtered product is named %q; %s's last search is updated\n", p.SearchID, p.Query, p.UserID)
		return
	}
	fmt.Fprintf(w, "search %s: %d product(s) recommended to %s for %q\n", p.SearchID, len(mine), p.UserID, p.Query)
	printProducts(w, mine)
}
