package process

import (
	"context"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/acls"
	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/supervise"
)

// KafkaFor is the Kafka a component's clients are built from: its own
// principal when the process was given one (`shopstream dev --secure`
// runs each component as its own user), else the process's; either way
// with the component's client id (clients.ClientID).
func (e *Env) KafkaFor(component string) *clients.Kafka {
	k, ok := e.Principals[component]
	if !ok {
		k = e.Kafka
	}
	return k.With(kgo.ClientID(clients.ClientID(component)))
}

// clientFor is a connected client (and an admin over it) of a component's
// principal: the process's shared one unless the component has its own.
func (e *Env) clientFor(ctx context.Context, component string) (*kgo.Client, *kadm.Client, error) {
	if _, ok := e.Principals[component]; !ok {
		cl, err := e.ConnectKafka(ctx)
		return cl, e.Admin, err
	}
	e.principalMu.Lock()
	defer e.principalMu.Unlock()
	if cl, ok := e.principalClients[component]; ok {
		return cl, kadm.NewClient(cl), nil
	}
	cl, err := e.Principals[component].Connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	if e.principalClients == nil {
		e.principalClients = map[string]*kgo.Client{}
	}
	e.principalClients[component] = cl
	return cl, kadm.NewClient(cl), nil
}

// checkAccess asks the brokers whether the component's principal may do
// what the component does (internal/acls), so a missing ACL fails the
// component at start, naming the operation and the resource. Without a
// named principal (PLAINTEXT, TLS without SASL, OAUTHBEARER, IAM) there is
// nothing to ask about.
func (e *Env) checkAccess(component string) ([]acls.Rule, error) {
	k := e.KafkaFor(component)
	user, ok := strings.CutPrefix(k.Principal(), "User:")
	if !ok {
		return nil, nil
	}
	rules := acls.Own(component, user, e.Config.Topics)
	ctx, cancel := context.WithTimeout(context.Background(), e.Config.DialTimeout)
	defer cancel()
	cl, _, err := e.clientFor(ctx, component)
	if err != nil {
		return nil, err
	}
	return rules, acls.Check(ctx, cl, component, rules)
}

// explained runs a component and, when it stops on an authorization
// error, names the ACL its principal lacks.
type explained struct {
	supervise.Component
	name  string
	rules []acls.Rule
}

// Guard wraps a component so that, when a request of its principal is
// refused, its error names the ACL it lacks.
func (e *Env) Guard(component string, c supervise.Component) supervise.Component {
	user, ok := strings.CutPrefix(e.KafkaFor(component).Principal(), "User:")
	if !ok {
		return c
	}
	return &explained{Component: c, name: component, rules: acls.Own(component, user, e.Config.Topics)}
}

func (x *explained) Run(ctx context.Context) error {
	return acls.Explain(x.name, x.rules, x.Component.Run(ctx))
}

func (x *explained) Ready() <-chan struct{} {
	if r, ok := x.Component.(supervise.Readier); ok {
		return r.Ready()
	}
	ch := make(chan struct{})
	close(ch)
	return ch
}

func (x *explained) StopWithin() time.Duration {
	if b, ok := x.Component.(supervise.Bounded); ok {
		return b.StopWithin()
	}
	return 0
}
