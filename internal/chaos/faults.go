package chaos

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FaultKeys are the requests whose answers a schedule may delay or drop.
// AddPartitionsToTxn and AddOffsetsToTxn are not among them: franz-go's
// transactions against these brokers (KIP-890 part 2) never send them, so
// a fault on them took no request (12 and 13 of 32 in two 50-seed runs)
// and counted as a fault injected.
var FaultKeys = []kmsg.Key{kmsg.EndTxn, kmsg.TxnOffsetCommit,
	kmsg.Produce, kmsg.Fetch, kmsg.Heartbeat, kmsg.JoinGroup, kmsg.SyncGroup}

// GroupSessionTimeout is the session and rebalance timeout the harness's
// brokers keep consumer group members to: above franz-go's 3s heartbeat
// interval, well below its 45s session timeout.
const GroupSessionTimeout = 4500 * time.Millisecond

// requestFaults are the request-level faults set on the cluster: the
// delays and drops the current schedule asked for act on each connection
// as the broker reads it (wire.go); kfake control functions, installed
// once, cap transaction and session timeouts, hold OffsetForLeaderEpoch
// during leader moves, and note which group members are alive.
type requestFaults struct {
	c *kfake.Cluster

	mu    sync.Mutex
	rules []*rule
	// caps are transaction timeouts lower than TxnTimeoutCap, by
	// transactional id prefix.
	caps map[string]time.Duration
	// seen is when each group member last sent a request naming itself.
	seen map[string]time.Time
	// moving is open while the harness moves leaders and writes the new
	// epochs' first batches (see Infra.moveLeaders); epochAsks wait on it.
	moving chan struct{}
}

// rule delays (Delay > 0) or drops the requests of Key that Client sent
// (a client id prefix; "" for every client) and Match accepts, until Until
// or Left more requests. Rules act on the wire (see wire.go).
type rule struct {
	Key    kmsg.Key
	Delay  time.Duration
	Drop   bool
	Client string
	Match  func(kmsg.Request) bool
	Until  time.Time
	Left   int
	hits   atomic.Int64
}

func newRequestFaults() *requestFaults {
	return &requestFaults{caps: map[string]time.Duration{}, seen: map[string]time.Time{}}
}

func (f *requestFaults) install(c *kfake.Cluster) {
	f.c = c
	c.ControlKey(int16(kmsg.InitProducerID), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		r := req.(*kmsg.InitProducerIDRequest)
		if r.TransactionalID == nil {
			return nil, nil, false
		}
		limit := TxnTimeoutCap
		f.mu.Lock()
		for prefix, d := range f.caps {
			if strings.HasPrefix(*r.TransactionalID, prefix) {
				limit = min(limit, d)
			}
		}
		f.mu.Unlock()
		// The broker grants less than the client asked for, as a broker
		// whose transaction.max.timeout.ms is low would, were it to cap
		// instead of refuse: the client does not learn the real bound.
		r.TransactionTimeoutMillis = min(r.TransactionTimeoutMillis, int32(limit.Milliseconds()))
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.JoinGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		// franz-go asks for a 45s session and a 60s rebalance timeout: a
		// killed member would hold its partitions for longer than a
		// schedule lasts. The broker keeps the members to a shorter one.
		r := req.(*kmsg.JoinGroupRequest)
		r.SessionTimeoutMillis = min(r.SessionTimeoutMillis, int32(GroupSessionTimeout.Milliseconds()))
		r.RebalanceTimeoutMillis = min(r.RebalanceTimeoutMillis, int32(GroupSessionTimeout.Milliseconds()))
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.OffsetForLeaderEpoch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		f.mu.Lock()
		moving := f.moving
		f.mu.Unlock()
		if moving != nil {
			c.SleepControl(func() { <-moving })
		}
		return nil, nil, false
	})
	for _, key := range []kmsg.Key{kmsg.Heartbeat, kmsg.JoinGroup, kmsg.SyncGroup, kmsg.TxnOffsetCommit} {
		c.ControlKey(int16(key), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			f.sawMember(req)
			return nil, nil, false
		})
	}
}

// mayMatch says whether a rule for key is set at all, so that the wire
// parses only the requests a rule may be about.
func (f *requestFaults) mayMatch(key kmsg.Key) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rules {
		if r.Key == key {
			return true
		}
	}
	return false
}

// match returns the rule that applies now to a request of client, if any.
func (f *requestFaults) match(key kmsg.Key, client string, req kmsg.Request) *rule {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rules {
		if r.Key != key || now.After(r.Until) || r.Left == 0 || !strings.HasPrefix(client, r.Client) || (r.Match != nil && !r.Match(req)) {
			continue
		}
		if r.Left > 0 {
			r.Left--
		}
		r.hits.Add(1)
		return r
	}
	return nil
}

// sawMember notes that a group member is alive.
func (f *requestFaults) sawMember(req kmsg.Request) {
	var g, m string
	switch r := req.(type) {
	case *kmsg.HeartbeatRequest:
		g, m = r.Group, r.MemberID
	case *kmsg.JoinGroupRequest:
		g, m = r.Group, r.MemberID
	case *kmsg.SyncGroupRequest:
		g, m = r.Group, r.MemberID
	case *kmsg.TxnOffsetCommitRequest:
		g, m = r.Group, r.MemberID
	}
	if m == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen[g+"\x00"+m] = time.Now()
}

// lastSeen is when a member last named itself, zero when never.
func (f *requestFaults) lastSeen(group, member string) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[group+"\x00"+member]
}

// hold makes OffsetForLeaderEpoch requests wait until release.
func (f *requestFaults) hold() (release func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.moving = ch
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		if f.moving == ch {
			f.moving = nil
		}
		f.mu.Unlock()
		close(ch)
	}
}

// spent says whether a rule has taken every request it was set for.
func (f *requestFaults) spent(r *rule) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return r.Left == 0
}

func (f *requestFaults) add(r *rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, r)
}

func (f *requestFaults) capTimeout(prefix string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.caps[prefix] = d
}

// clear removes every rule and cap: the schedule is over.
func (f *requestFaults) clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
	f.caps = map[string]time.Duration{}
}
