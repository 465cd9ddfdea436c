package chaos

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// evictAfter is how long a member may stay silent before the watchdog
// takes it for dead: its session timeout, and some slack for a member
// whose JoinGroup waits out a rebalance.
const evictAfter = GroupSessionTimeout + 1500*time.Millisecond

// watchGroups does what kfake fails to do for one kind of member: expire
// it. A member killed while its JoinGroup waits for a rebalance to finish
// never gets the answer; kfake then never starts its session timer (it
// does so only once an answer is written), and the leader's SyncGroup
// stops the timer that would remove members that never synced. Such a
// member keeps its partitions forever, and nobody consumes them. A broker
// removes a member whose session ran out; the watchdog removes a member
// that has named itself in no request for longer than that (LeaveGroup on
// its behalf), as the broker should have.
func (r *run) watchGroups(ctx context.Context) {
	firstSeen := map[string]time.Time{}
	groups := []string{r.groups[Streamer], r.groups[Recommender], r.groups[Sink], r.groups[Collector]}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		now := time.Now()
		for _, g := range groups {
			info := r.in.Kafka.GroupInfo(g)
			if info == nil {
				continue
			}
			for _, m := range info.Members {
				key := g + "\x00" + m.MemberID
				last := r.in.faults.lastSeen(g, m.MemberID)
				if first, ok := firstSeen[key]; !ok {
					firstSeen[key] = now
					continue
				} else if first.After(last) {
					last = first
				}
				if now.Sub(last) < evictAfter {
					continue
				}
				req := kmsg.NewPtrLeaveGroupRequest()
				req.Group = g
				lm := kmsg.NewLeaveGroupRequestMember()
				lm.MemberID = m.MemberID
				req.Members = append(req.Members, lm)
				rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := req.RequestWith(rctx, r.in.client)
				cancel()
				r.event("watchdog: member %s of %s silent for %s, holding %v: removed (err %v)", m.MemberID, g, now.Sub(last).Round(time.Millisecond), m.Assignment, err)
				r.mu.Lock()
				r.evictions++
				r.mu.Unlock()
			}
		}
	}
}
