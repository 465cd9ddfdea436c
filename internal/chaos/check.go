package chaos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/streamer"
	"github.com/shopstream/shopstream/streamer/recommender"
)

// checker compares what the pipeline wrote with the oracle: the emulated
// products (derived from the emulation's seed) and the inputs the schedule
// recorded (API posts and deletes, searches, bad records).
type checker struct {
	r                         *run
	lost, duplicated, aborted int
	violations                []string
	stats                     map[string]int
}

func (c *checker) add(n *int, format string, a ...any) {
	*n++
	if len(c.violations) < 200 {
		c.violations = append(c.violations, fmt.Sprintf(format, a...))
	}
}
func (c *checker) lose(format string, a ...any) { c.add(&c.lost, "lost: "+format, a...) }
func (c *checker) dup(format string, a ...any)  { c.add(&c.duplicated, "duplicated: "+format, a...) }
func (c *checker) abortRead(format string, a ...any) {
	c.add(&c.aborted, "aborted read: "+format, a...)
}
func (c *checker) wrong(format string, a ...any) {
	if len(c.violations) < 200 {
		c.violations = append(c.violations, fmt.Sprintf(format, a...))
	}
}

// expected is the oracle: each product key the product topic must hold,
// with how many times and under which name.
type expected struct {
	names map[string]string // key -> name, for emulated and posted products
	// exact: must appear exactly once; atMostOnce: may appear once (an
	// API call whose answer was lost).
	exact, atMostOnce map[string]bool
	tombstones        map[string]string // key -> outcome of the delete
	bad               map[string][]byte
}

func (r *run) oracle() (expected, error) {
	e := expected{names: map[string]string{}, exact: map[string]bool{}, atMostOnce: map[string]bool{}, tombstones: map[string]string{}}
	g, err := r.inputs.generator()
	if err != nil {
		return e, err
	}
	for i := range uint64(r.s.Products) {
		p := g.Product(i)
		e.names[p.Key()], e.exact[p.Key()] = p.Name, true
	}
	r.inputs.mu.Lock()
	defer r.inputs.mu.Unlock()
	for key, p := range r.inputs.posts {
		e.names[key] = p.product.Name
		switch p.outcome {
		case Accepted:
			e.exact[key] = true
		case Unknown:
			e.atMostOnce[key] = true
		}
	}
	for key, o := range r.inputs.deletes {
		e.tombstones[key] = o
	}
	e.bad = r.inputs.bad
	return e, nil
}

// logs are the schedule's topics as the checker read them.
type logs struct {
	products, filtered, complete, find, recs, dlq, filter *topicLog
}

func (r *run) check(ctx context.Context) checker {
	c := checker{r: r, stats: map[string]int{}}
	var l logs
	for _, t := range []struct {
		dst   **topicLog
		topic string
	}{
		{&l.products, r.topics.Products}, {&l.filtered, r.topics.Filtered}, {&l.complete, r.topics.CompleteProducts},
		{&l.find, r.topics.Find}, {&l.recs, r.topics.Recommendations}, {&l.dlq, r.topics.DLQ}, {&l.filter, r.topics.Filter},
	} {
		tl, err := readTopic(ctx, r.in.Clients, r.in.Admin, t.topic)
		if err != nil {
			c.wrong("check: %v", err)
			return c
		}
		*t.dst = tl
		c.stats["records"] += len(tl.committed)
		c.stats["uncommitted"] += tl.uncommitted
		for _, a := range tl.abortedReads() {
			c.abortRead("%s/%d@%d (key %s) was read with read_committed but its transaction was aborted", a.Topic, a.Partition, a.Offset, a.Key)
		}
	}
	e, err := r.oracle()
	if err != nil {
		c.wrong("check: %v", err)
		return c
	}
	c.products(l.products, e)
	c.filteredTopic(ctx, l, e)
	c.completeTopic(ctx, l, e)
	c.searches(l.find)
	c.recommendations(ctx, l)
	c.deadLetters(l.dlq, e)
	c.tables(ctx, l)
	return c
}

// products: every emulated product once; every accepted post once, an
// unanswered one at most once; a tombstone per accepted delete; each bad
// record once; nothing else.
func (c *checker) products(l *topicLog, e expected) {
	values, tombs := map[string]int{}, map[string]int{}
	for _, rec := range l.committed {
		key := string(rec.Key)
		if rec.Value == nil {
			tombs[key]++
			continue
		}
		values[key]++
		if b, ok := e.bad[key]; ok {
			if !bytes.Equal(b, rec.Value) {
				c.wrong("%s: bad record %s holds other bytes than were written", l.topic, key)
			}
			continue
		}
		name, ok := e.names[key]
		if !ok {
			c.wrong("%s holds a product nobody wrote: %s", l.topic, key)
			continue
		}
		var p records.Product
		if err := c.r.in.Serde.Decode(context.Background(), rec.Value, &p); err != nil || p.Name != name {
			c.wrong("%s: %s is not the product written (%v, name %q, want %q)", l.topic, key, err, p.Name, name)
		}
	}
	for key := range e.names {
		n := values[key]
		switch {
		case e.exact[key] && n == 0:
			c.lose("%s has no record of %s", l.topic, key)
		case (e.exact[key] || e.atMostOnce[key]) && n > 1:
			c.dup("%s holds %s %d times", l.topic, key, n)
		case !e.exact[key] && !e.atMostOnce[key] && n > 0:
			c.wrong("%s holds %s, which the API refused", l.topic, key)
		}
	}
	for key := range e.bad {
		if values[key] != 1 {
			c.wrong("%s holds bad record %s %d times, want once", l.topic, key, values[key])
		}
	}
	for key, o := range e.tombstones {
		n := tombs[key]
		switch {
		case o == Accepted && n == 0:
			c.lose("%s has no tombstone of %s, whose delete was accepted", l.topic, key)
		case n > 1:
			c.dup("%s holds %d tombstones of %s", l.topic, n, key)
		case o == Rejected && n > 0:
			c.wrong("%s holds a tombstone of %s, whose delete was refused", l.topic, key)
		}
	}
	c.stats["products"] = len(values)
}

// filterStates reads the versions the StreamFilter workflow published;
// version 0 (no filter) passes everything.
func (c *checker) filterStates(ctx context.Context, l *topicLog) map[int64]records.FilterState {
	out := map[int64]records.FilterState{0: {}}
	for _, rec := range l.committed {
		var st records.FilterState
		if rec.Value == nil || c.r.in.Serde.Decode(ctx, rec.Value, &st) != nil {
			continue
		}
		out[st.Version] = st
	}
	return out
}

// filteredTopic: each record forwarded byte for byte from a committed
// product that matches the filter version in its header, at most once;
// each product that every version passes, once; each delete, once.
func (c *checker) filteredTopic(ctx context.Context, l logs, e expected) {
	states := c.filterStates(ctx, l.filter)
	matchers := map[int64]*streamer.Matcher{}
	for v, st := range states {
		matchers[v] = streamer.NewMatcher(st.Substring, st.CaseSensitive)
	}
	source := map[string]int{} // key + value -> committed copies in the product topic
	tombs := map[string]int{}
	names := map[string]string{}
	for _, rec := range l.products.committed {
		if rec.Value == nil {
			tombs[string(rec.Key)]++
			continue
		}
		source[string(rec.Key)+"\x00"+string(rec.Value)]++
	}
	got, gotTombs := map[string]int{}, map[string]int{}
	for _, rec := range l.filtered.committed {
		key := string(rec.Key)
		if rec.Value == nil {
			gotTombs[key]++
			continue
		}
		kv := key + "\x00" + string(rec.Value)
		got[kv]++
		if source[kv] == 0 {
			c.abortRead("%s/%d@%d (%s) forwards a product that %s never committed", rec.Topic, rec.Partition, rec.Offset, key, l.products.topic)
			continue
		}
		if got[kv] > source[kv] {
			c.dup("%s forwards %s more often than %s holds it", rec.Topic, key, l.products.topic)
		}
		v, ok := streamer.FilterVersion(rec.Headers)
		m := matchers[v]
		if !ok || m == nil {
			c.wrong("%s/%d@%d (%s) names filter version %d, which was never published", rec.Topic, rec.Partition, rec.Offset, key, v)
			continue
		}
		name, ok := e.names[key]
		if !ok {
			continue // reported with the product topic
		}
		names[key] = name
		if !m.Match([]byte(name)) {
			c.wrong("%s/%d@%d: %q does not match filter v%d %q", rec.Topic, rec.Partition, rec.Offset, name, v, states[v].Substring)
		}
	}
	// A product every published version passes must be there; one that no
	// version passes must not.
	for kv, n := range source {
		key := kv[:bytes.IndexByte([]byte(kv), 0)]
		name, ok := e.names[key]
		if !ok {
			continue // a bad record: dead-lettered, not filtered
		}
		all, none := true, true
		for _, m := range matchers {
			if m.Match([]byte(name)) {
				none = false
			} else {
				all = false
			}
		}
		switch {
		case all && got[kv] < n:
			c.lose("%s lacks %s (%q), which every filter version passes", l.filtered.topic, key, name)
		case none && got[kv] > 0:
			c.wrong("%s holds %s (%q), which no filter version passes", l.filtered.topic, key, name)
		}
	}
	for key, n := range tombs {
		switch g := gotTombs[key]; {
		case g < n:
			c.lose("%s lacks the delete of %s (deletes pass every filter)", l.filtered.topic, key)
		case g > n:
			c.dup("%s holds the delete of %s %d times", l.filtered.topic, key, g)
		}
	}
	for key := range gotTombs {
		if tombs[key] == 0 {
			c.abortRead("%s holds a delete of %s that %s never committed", l.filtered.topic, key, l.products.topic)
		}
	}
	c.stats["filtered"] = len(got)
}

// completeTopic: a complete product of each product's last version, made
// of that product, with every image stored; at most one of an earlier
// version (the collector decides one key's new state per batch, so a
// version superseded within a batch is skipped); a delete at the end of
// each deleted product.
func (c *checker) completeTopic(ctx context.Context, l logs, e expected) {
	type version struct {
		name    string
		updated time.Time
		last    bool
	}
	versions := map[string][]version{}
	lastTomb := map[string]bool{}
	for _, rec := range l.products.committed {
		key := string(rec.Key)
		if _, bad := e.bad[key]; bad {
			continue
		}
		for i := range versions[key] {
			versions[key][i].last = false
		}
		lastTomb[key] = rec.Value == nil
		if rec.Value == nil {
			continue
		}
		var p records.Product
		if err := c.r.in.Serde.Decode(ctx, rec.Value, &p); err == nil {
			versions[key] = append(versions[key], version{name: p.Name, updated: p.UpdatedAt, last: true})
		}
	}
	got := map[string][]version{}
	gotLastTomb := map[string]bool{}
	for _, rec := range l.complete.committed {
		key := string(rec.Key)
		gotLastTomb[key] = rec.Value == nil
		if rec.Value == nil {
			continue
		}
		var cp records.CompleteProduct
		if err := c.r.in.Serde.Decode(ctx, rec.Value, &cp); err != nil {
			c.wrong("%s/%d@%d does not decode: %v", rec.Topic, rec.Partition, rec.Offset, err)
			continue
		}
		found := false
		for _, v := range versions[key] {
			found = found || v.name == cp.Product.Name && v.updated.Equal(cp.Product.UpdatedAt)
		}
		if !found {
			c.abortRead("%s/%d@%d (%s) is made of a product %s never committed", rec.Topic, rec.Partition, rec.Offset, key, l.products.topic)
			continue
		}
		got[key] = append(got[key], version{name: cp.Product.Name, updated: cp.Product.UpdatedAt})
	}
	for key, vs := range versions {
		for _, v := range vs {
			n := 0
			for _, g := range got[key] {
				if g.name == v.name && g.updated.Equal(v.updated) {
					n++
				}
			}
			switch {
			case n > 1:
				c.dup("%s has %d complete products of %s (updated %s)", l.complete.topic, n, key, v.updated.Format(time.RFC3339Nano))
			case n == 0 && v.last && !lastTomb[key]:
				c.lose("%s has no complete product of %s", l.complete.topic, key)
			}
		}
	}
	for key, deleted := range lastTomb {
		if deleted && !gotLastTomb[key] {
			c.lose("%s does not end with the delete of %s", l.complete.topic, key)
		}
	}
	// The images of every complete product in the final table exist and
	// hold what was stored; those of deleted products are gone.
	images := 0
	for key, rec := range l.complete.latest() {
		if rec.Value == nil {
			continue
		}
		var cp records.CompleteProduct
		if err := c.r.in.Serde.Decode(ctx, rec.Value, &cp); err != nil {
			continue
		}
		for _, im := range cp.Images {
			images++
			path := im.Path // where the local blob store keeps it
			if !filepath.IsAbs(path) {
				path = filepath.Join(c.r.blobs, filepath.FromSlash(path))
			}
			b, err := os.ReadFile(path)
			if err != nil {
				c.lose("image %s of complete product %s: %v", im.Path, key, err)
				continue
			}
			if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != im.SHA256 || int64(len(b)) != im.Size {
				c.wrong("image %s of complete product %s does not hold what was stored", im.Path, key)
			}
		}
	}
	c.stats["images"] = images
}

// searches: each acknowledged prompt once; nothing else.
func (c *checker) searches(l *topicLog) {
	c.r.inputs.mu.Lock()
	sent := map[string]bool{}
	for _, s := range c.r.inputs.searches {
		sent[s.SearchID] = true
	}
	c.r.inputs.mu.Unlock()
	seen := map[string]int{}
	for _, rec := range l.committed {
		var sp records.SearchPrompt
		if err := c.r.in.Serde.Decode(context.Background(), rec.Value, &sp); err != nil {
			c.wrong("%s/%d@%d does not decode: %v", rec.Topic, rec.Partition, rec.Offset, err)
			continue
		}
		seen[sp.SearchID]++
		if !sent[sp.SearchID] {
			c.wrong("%s holds search %s, which nobody sent", l.topic, sp.SearchID)
		}
	}
	for id := range sent {
		switch n := seen[id]; {
		case n == 0:
			c.lose("%s lacks search %s", l.topic, id)
		case n > 1:
			c.dup("%s holds search %s %d times", l.topic, id, n)
		}
	}
}

// recommendations: every recommended product is a filtered product whose
// name is that of one of the user's searches, listed once; each user's
// last list holds every filtered product its last search names (up to
// recommender.MaxProducts).
func (c *checker) recommendations(ctx context.Context, l logs) {
	c.r.inputs.mu.Lock()
	searches := map[string]records.SearchPrompt{}
	last := map[string]records.SearchPrompt{}
	for _, s := range c.r.inputs.searches {
		searches[s.SearchID] = s
		if s.SearchedAt.After(last[s.UserID].SearchedAt) || last[s.UserID].SearchID == "" {
			last[s.UserID] = s
		}
	}
	c.r.inputs.mu.Unlock()
	filtered := map[string]bool{} // keys ever committed to the filtered topic
	for _, rec := range l.filtered.committed {
		if rec.Value != nil {
			filtered[string(rec.Key)] = true
		}
	}
	for _, rec := range l.recs.committed {
		var rc records.Recommendation
		if rec.Value == nil || c.r.in.Serde.Decode(ctx, rec.Value, &rc) != nil {
			continue
		}
		listed := map[string]bool{}
		for _, p := range rc.Products {
			key := records.ProductKey(p.MallID, p.ProductID)
			if listed[key] {
				c.dup("%s/%d@%d lists %s twice for %s", rec.Topic, rec.Partition, rec.Offset, key, rc.UserID)
			}
			listed[key] = true
			s, ok := searches[p.SearchID]
			switch {
			case !filtered[key]:
				c.abortRead("%s/%d@%d recommends %s, which %s never committed", rec.Topic, rec.Partition, rec.Offset, key, l.filtered.topic)
			case !ok || s.UserID != rc.UserID:
				c.wrong("%s/%d@%d recommends %s to %s for search %s, not one of theirs", rec.Topic, rec.Partition, rec.Offset, key, rc.UserID, p.SearchID)
			case recommender.Normalize(s.Query) != recommender.Normalize(p.Name):
				c.wrong("%s/%d@%d recommends %q for the search %q", rec.Topic, rec.Partition, rec.Offset, p.Name, s.Query)
			}
		}
	}
	// The join, against the filtered topic's final table.
	table := map[string]string{} // key -> normalized name
	for key, rec := range l.filtered.latest() {
		var p records.Product
		if rec.Value != nil && c.r.in.Serde.Decode(ctx, rec.Value, &p) == nil {
			table[key] = recommender.Normalize(p.Name)
		}
	}
	final := l.recs.latest()
	for user, s := range last {
		var want []string
		for key, name := range table {
			if name == recommender.Normalize(s.Query) {
				want = append(want, key)
			}
		}
		rec := final[user]
		var rc records.Recommendation
		if rec == nil || rec.Value == nil || c.r.in.Serde.Decode(ctx, rec.Value, &rc) != nil {
			if len(want) > 0 {
				c.lose("%s has no recommendations for %s, whose last search %q matches %d products", l.recs.topic, user, s.Query, len(want))
			}
			continue
		}
		have := map[string]bool{}
		for _, p := range rc.Products {
			have[records.ProductKey(p.MallID, p.ProductID)] = true
		}
		if len(want) > recommender.MaxProducts {
			if len(rc.Products) != recommender.MaxProducts {
				c.lose("%s lists %d products for %s, want %d", l.recs.topic, len(rc.Products), user, recommender.MaxProducts)
			}
			continue
		}
		sort.Strings(want)
		for _, key := range want {
			if !have[key] {
				c.lose("%s lacks %s for %s, whose last search %q names it", l.recs.topic, key, user, s.Query)
			}
		}
	}
}

// deadLetters: only the bad records written, each once by each component
// that reads the product topic and cannot decode it.
func (c *checker) deadLetters(l *topicLog, e expected) {
	byComp := map[string]int{}
	for _, rec := range l.committed {
		key := string(rec.Key)
		comp := ""
		for _, h := range rec.Headers {
			if h.Key == deadletter.HeaderComponent {
				comp = string(h.Value)
			}
		}
		if _, ok := e.bad[key]; !ok {
			reason := ""
			for _, h := range rec.Headers {
				if h.Key == deadletter.HeaderReason || h.Key == deadletter.HeaderError {
					reason += " " + string(h.Value)
				}
			}
			c.wrong("%s holds %s from %s, which is no injected bad record:%s", l.topic, key, comp, reason)
			continue
		}
		byComp[comp+"\x00"+key]++
		if byComp[comp+"\x00"+key] > 1 {
			c.wrong("%s/%d@%d: another dead letter of %s by %s: %s", rec.Topic, rec.Partition, rec.Offset, key, comp, describeLetter(rec))
		}
	}
	for key := range e.bad {
		for _, comp := range []string{"streamer", "collector", "sink"} {
			switch n := byComp[comp+"\x00"+key]; {
			case n == 0:
				c.lose("%s lacks the %s's dead letter of %s", l.topic, comp, key)
			case n > 1:
				c.dup("%s holds the %s's dead letter of %s %d times", l.topic, comp, key, n)
			}
		}
	}
	c.stats["dead letters"] = len(l.committed)
}

// tables: every table holds its topic's final state, each row pointing at
// the record it came from.
func (c *checker) tables(ctx context.Context, l logs) {
	conn, err := pgx.Connect(ctx, c.r.dsn)
	if err != nil {
		c.wrong("check the tables: %v", err)
		return
	}
	defer conn.Close(ctx)
	for _, t := range []struct {
		table, keyCol string
		log           *topicLog
		key           func(*kgo.Record) string
	}{
		{"products", "key", l.products, nil},
		{"filtered_products", "key", l.filtered, nil},
		{"complete_products", "key", l.complete, nil},
		{"recommendations", "user_id", l.recs, nil},
		{"searches", "search_id", l.find, func(rec *kgo.Record) string {
			var sp records.SearchPrompt
			_ = c.r.in.Serde.Decode(ctx, rec.Value, &sp)
			return sp.SearchID
		}},
	} {
		want := map[string]position{}
		for _, rec := range t.log.committed {
			key := string(rec.Key)
			if t.key != nil {
				key = t.key(rec)
			}
			if _, bad := c.r.inputs.bad[key]; bad {
				continue
			}
			if rec.Value == nil {
				delete(want, key)
				continue
			}
			want[key] = position{rec.Partition, rec.Offset}
		}
		rows, err := conn.Query(ctx, "SELECT "+t.keyCol+", source_partition, source_offset FROM "+t.table)
		if err != nil {
			c.wrong("read table %s: %v", t.table, err)
			continue
		}
		have := map[string]position{}
		for rows.Next() {
			var key string
			var p position
			if err := rows.Scan(&key, &p.partition, &p.offset); err != nil {
				c.wrong("read table %s: %v", t.table, err)
				break
			}
			have[key] = p
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			c.wrong("read table %s: %v", t.table, err)
			continue
		}
		for key, p := range want {
			h, ok := have[key]
			switch {
			case !ok:
				c.lose("table %s lacks %s (%s/%d@%d)", t.table, key, t.log.topic, p.partition, p.offset)
			case h != p:
				c.lose("table %s holds %s from %s/%d@%d, want the latest, @%d", t.table, key, t.log.topic, h.partition, h.offset, p.offset)
			}
		}
		for key, h := range have {
			if _, ok := want[key]; ok {
				continue
			}
			if t.log.aborted[h] {
				c.abortRead("table %s holds %s from %s/%d@%d, an aborted record", t.table, key, t.log.topic, h.partition, h.offset)
			} else {
				c.wrong("table %s holds %s (from %s/%d@%d), which its topic deleted or never held", t.table, key, t.log.topic, h.partition, h.offset)
			}
		}
		c.stats["rows"] += len(have)
	}
}

// filteredNames are the names of the products in the filtered topic's
// final table, for the last searches.
func (r *run) filteredNames(ctx context.Context) ([]string, error) {
	l, err := readTopic(ctx, r.in.Clients, r.in.Admin, r.topics.Filtered)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, rec := range l.latest() {
		var p records.Product
		if rec.Value == nil || r.in.Serde.Decode(ctx, rec.Value, &p) != nil || seen[p.Name] {
			continue
		}
		seen[p.Name] = true
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out, nil
}

// describeLetter says where a dead letter came from.
func describeLetter(rec *kgo.Record) string {
	var parts []string
	for _, h := range rec.Headers {
		switch h.Key {
		case deadletter.HeaderInstance, deadletter.HeaderSourceTopic, deadletter.HeaderSourcePartition, deadletter.HeaderSourceOffset, deadletter.HeaderTime:
			parts = append(parts, h.Key+"="+string(h.Value))
		}
	}
	return fmt.Sprintf("%v (producer %d epoch %d)", parts, rec.ProducerID, rec.ProducerEpoch)
}
