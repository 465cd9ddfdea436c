package imagefetch

import (
	"context"
	"strings"
	"sync"
)

// scheduler hands out the fetcher's download slots so that no host and no
// tenant (a mall) can take them all: a host gets at most perHost at once,
// a tenant at most perTenant (three quarters of the slots, so another
// tenant always finds one free), and a freed slot goes to the waiting
// tenant that holds the fewest, first come first served among equals. A
// mall whose images hang therefore delays its own downloads, not another
// mall's.
type scheduler struct {
	limit, perHost, perTenant int

	mu       sync.Mutex
	inUse    int
	byHost   map[string]int
	byTenant map[string]int
	waiting  []*waiter
}

type waiter struct {
	tenant, host string
	granted      chan struct{}
}

func newScheduler(limit, perHost int) *scheduler {
	perTenant := max(1, limit-limit/4)
	return &scheduler{limit: limit, perHost: max(1, perHost), perTenant: perTenant,
		byHost: map[string]int{}, byTenant: map[string]int{}}
}

func (s *scheduler) fits(tenant, host string) bool {
	return s.inUse < s.limit && s.byHost[host] < s.perHost && s.byTenant[tenant] < s.perTenant
}

func (s *scheduler) take(tenant, host string) {
	s.inUse++
	s.byHost[host]++
	s.byTenant[tenant]++
}

// acquire waits for a slot for tenant's download from host; release gives
// it back.
func (s *scheduler) acquire(ctx context.Context, tenant, host string) (release func(), err error) {
	host = strings.ToLower(host)
	release = func() { s.release(tenant, host) }
	s.mu.Lock()
	if len(s.waiting) == 0 && s.fits(tenant, host) {
		s.take(tenant, host)
		s.mu.Unlock()
		return release, nil
	}
	w := &waiter{tenant: tenant, host: host, granted: make(chan struct{})}
	s.waiting = append(s.waiting, w)
	s.grantLocked() // a waiter ahead may be blocked by its host while this one fits
	s.mu.Unlock()
	select {
	case <-w.granted:
		return release, nil
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		select {
		case <-w.granted: // granted meanwhile: give it back
			s.releaseLocked(tenant, host)
		default:
			for i, o := range s.waiting {
				if o == w {
					s.waiting = append(s.waiting[:i], s.waiting[i+1:]...)
					break
				}
			}
		}
		return nil, ctx.Err()
	}
}

func (s *scheduler) release(tenant, host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked(tenant, host)
}

func (s *scheduler) releaseLocked(tenant, host string) {
	s.inUse--
	if s.byHost[host]--; s.byHost[host] == 0 {
		delete(s.byHost, host)
	}
	if s.byTenant[tenant]--; s.byTenant[tenant] == 0 {
		delete(s.byTenant, tenant)
	}
	s.grantLocked()
}

// grantLocked gives free slots to waiters: each time the one that fits
// whose tenant holds the fewest, the earliest among equals.
func (s *scheduler) grantLocked() {
	for s.inUse < s.limit {
		best := -1
		for i, w := range s.waiting {
			if !s.fits(w.tenant, w.host) {
				continue
			}
			if best < 0 || s.byTenant[w.tenant] < s.byTenant[s.waiting[best].tenant] {
				best = i
			}
		}
		if best < 0 {
			return
		}
		w := s.waiting[best]
		s.waiting = append(s.waiting[:best], s.waiting[best+1:]...)
		s.take(w.tenant, w.host)
		close(w.granted)
	}
}
