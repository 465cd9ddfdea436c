package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/records"
)

func recsCommand() *cli.Command {
	return &cli.Command{
		Name:  "recs",
		Usage: "show a user's current recommendations (newest first)",
		Description: "Reads the user's latest Recommendation from the recommendations topic (committed records only).\n" +
			"--follow then prints each update as it arrives, until Ctrl-C; --json prints the record as JSON\n" +
			"(one object per line with --follow; null when the user has none).\n\n" +
			"Examples:\n  shopstream recs --user alice\n  shopstream recs --user alice --follow --json",
		Flags: withFlags(
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, EnvVars: []string{"SHOPSTREAM_USER"}, Usage: "whose recommendations"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing each update until Ctrl-C"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		),
		Action: func(c *cli.Context) error {
			user, err := checkUser(c)
			if err != nil {
				return err
			}
			e, err := connect(c, true, false)
			if err != nil {
				return err
			}
			defer e.close()
			return showRecs(c.Context, e, user, c.Bool("follow"), c.Bool("json"), c.App.Writer)
		},
	}
}

// userPartition is the partition of the recommendations topic that holds
// the user: the one Kafka's default (murmur2) partitioner picks for the key,
// as `shopstream search` and ksqlDB do. The built-in recommender writes to
// the partition of the user's prompt, the same one when prompts are keyed
// the same way.
func userPartition(ctx context.Context, e *env, user string) (int32, int, error) {
	topic := e.cfg.Topics.Recommendations
	details, err := e.admin.ListTopics(ctx, topic)
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
	next    map[int32]kgo.Offset // where to go on reading for updates
}

// readLatest reads the user's partition up to its last stable offset; when
// the user is not there (prompts keyed by another partitioner), it reads
// the other partitions too.
func readLatest(ctx context.Context, e *env, user string) (*latestRec, error) {
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
		return nil, err
	}
	if more.rec == nil && !more.deleted {
		more.next = res.next // follow the user's own partition
	}
	return more, nil
}

func readPartitions(ctx context.Context, e *env, user string, parts []int32) (*latestRec, error) {
	topic := e.cfg.Topics.Recommendations
	ends, err := e.admin.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	res := &latestRec{next: map[int32]kgo.Offset{}}
	pending := map[int32]int64{}
	consume := map[int32]kgo.Offset{}
	for _, p := range parts {
		end, _ := ends.Lookup(topic, p)
		res.next[p] = kgo.NewOffset().At(end.Offset)
		if end.Offset > 0 {
			pending[p] = end.Offset
			consume[p] = kgo.NewOffset().AtStart()
		}
	}
	if len(pending) == 0 {
		return res, nil
	}
	cl, err := e.kafkaClients.Connect(ctx,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var latest *kgo.Record
	for len(pending) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err := fatalFetchError(fs); err != nil {
			return nil, fmt.Errorf("read %s: %w", topic, err)
		}
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			end, ok := pending[fp.Partition]
			if !ok {
				return
			}
			for _, r := range fp.Records {
				if r.Offset >= end {
					break
				}
				if !r.Attrs.IsControl() && string(r.Key) == user {
					latest = r
				}
			}
			if n := len(fp.Records); n > 0 && fp.Records[n-1].Offset+1 >= end {
				delete(pending, fp.Partition)
			}
		})
	}
	if latest == nil {
		return res, nil
	}
	if latest.Value == nil {
		res.deleted = true
		return res, nil
	}
	res.rec = new(records.Recommendation)
	if err := e.serde.Decode(ctx, latest.Value, res.rec); err != nil {
		return nil, fmt.Errorf("decode the recommendations of %s (%s partition %d offset %d): %w", user, topic, latest.Partition, latest.Offset, err)
	}
	return res, nil
}

func fatalFetchError(fs kgo.Fetches) error {
	for _, fe := range fs.Errors() {
		if !errors.Is(fe.Err, context.Canceled) && !errors.Is(fe.Err, context.DeadlineExceeded) {
			return fe.Err
		}
	}
	return nil
}

func showRecs(ctx context.Context, e *env, user string, follow, asJSON bool, w io.Writer) error {
	res, err := readLatest(ctx, e, user)
	if err != nil {
		return err
	}
	printRecs(w, user, res.rec, res.deleted, asJSON)
	if !follow {
		return nil
	}
	cl, err := e.kafkaClients.Connect(ctx,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{e.cfg.Topics.Recommendations: res.next}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil // Ctrl-C ends --follow
		}
		if err := fatalFetchError(fs); err != nil {
			return fmt.Errorf("follow %s: %w", e.cfg.Topics.Recommendations, err)
		}
		var ferr error
		fs.EachRecord(func(r *kgo.Record) {
			if ferr != nil || string(r.Key) != user {
				return
			}
			if r.Value == nil {
				printRecs(w, user, nil, true, asJSON)
				return
			}
			rec := new(records.Recommendation)
			if err := e.serde.Decode(ctx, r.Value, rec); err != nil {
				ferr = fmt.Errorf("decode the recommendations of %s (partition %d offset %d): %w", user, r.Partition, r.Offset, err)
				return
			}
			printRecs(w, user, rec, false, asJSON)
		})
		if ferr != nil {
			return ferr
		}
	}
}

func printRecs(w io.Writer, user string, rec *records.Recommendation, deleted, asJSON bool) {
	if asJSON {
		if rec == nil {
			fmt.Fprintln(w, "null")
			return
		}
		b, _ := json.Marshal(rec) // plain strings, numbers and times: cannot fail
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
	e    *env
	user string
	cl   *kgo.Client
}

func newRecsWatcher(ctx context.Context, e *env, user string) (*recsWatcher, error) {
	p, _, err := userPartition(ctx, e, user)
	if err != nil {
		return nil, err
	}
	topic := e.cfg.Topics.Recommendations
	ends, err := e.admin.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	end, _ := ends.Lookup(topic, p)
	cl, err := e.kafkaClients.Connect(ctx,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(end.Offset)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return nil, err
	}
	return &recsWatcher{e: e, user: user, cl: cl}, nil
}

func (w *recsWatcher) close() { w.cl.Close() }

// waitFor prints, for each prompt, the products its search recommended,
// once the user's Recommendation shows the prompt as the last search.
func (w *recsWatcher) waitFor(ctx context.Context, sent []*records.SearchPrompt, timeout time.Duration, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	next := 0
	for next < len(sent) {
		fs := w.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("no recommendation for search %s arrived within %s: is a recommender running "+
					"(`shopstream dev`, `shopstream recommender`, or ksqlDB with the migrations applied)?", sent[next].SearchID, timeout)
			}
			return ctx.Err()
		}
		if err := fatalFetchError(fs); err != nil {
			return fmt.Errorf("wait for recommendations: %w", err)
		}
		var derr error
		fs.EachRecord(func(r *kgo.Record) {
			if derr != nil || next == len(sent) || string(r.Key) != w.user || r.Value == nil {
				return
			}
			var rec records.Recommendation
			if err := w.e.serde.Decode(ctx, r.Value, &rec); err != nil {
				derr = fmt.Errorf("decode the recommendations of %s: %w", w.user, err)
				return
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
		})
		if derr != nil {
			return derr
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
