package imagefetch

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// blocked lists the address ranges an image URL may not reach: a URL from a
// user must not make the collector talk to this machine, the private
// network, or a cloud provider's metadata service.
var blocked = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("169.254.169.254/32"), "the cloud metadata service"},
	{netip.MustParsePrefix("100.100.100.200/32"), "the cloud metadata service"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "the cloud metadata service"},
	{netip.MustParsePrefix("0.0.0.0/8"), "an unspecified address"},
	{netip.MustParsePrefix("127.0.0.0/8"), "a loopback address"},
	{netip.MustParsePrefix("10.0.0.0/8"), "a private address"},
	{netip.MustParsePrefix("172.16.0.0/12"), "a private address"},
	{netip.MustParsePrefix("192.168.0.0/16"), "a private address"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a shared (carrier-grade NAT) address"},
	{netip.MustParsePrefix("169.254.0.0/16"), "a link-local address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
	{netip.MustParsePrefix("224.0.0.0/4"), "a multicast address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"},
	{netip.MustParsePrefix("::/128"), "an unspecified address"},
	{netip.MustParsePrefix("::1/128"), "a loopback address"},
	{netip.MustParsePrefix("fc00::/7"), "a private address"},
	{netip.MustParsePrefix("fe80::/10"), "a link-local address"},
	{netip.MustParsePrefix("ff00::/8"), "a multicast address"},
	{netip.MustParsePrefix("64:ff9b::/96"), "a NAT64 address"}, // could embed any IPv4 address
	{netip.MustParsePrefix("2002::/16"), "a 6to4 address"},     // likewise
}

// BlockedReason says why an address may not be reached, or "" when it may.
func BlockedReason(a netip.Addr) string {
	a = a.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	for _, b := range blocked {
		if b.prefix.Contains(a) {
			return b.why
		}
	}
	return ""
}

// RefusedError is a URL the guard would not connect to.
type RefusedError struct {
	Addr string
	Why  string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused to connect to %s: %s (allow-list the host to permit it)", e.Addr, e.Why)
}

// guard dials only public addresses, except for allow-listed hosts. The check
// runs in the dialer's Control function, which sees the address after DNS
// resolution and is called for every connection, redirects included, so
// neither a DNS name pointing inside nor a redirect can get past it.
type guard struct {
	allow  map[string]bool // "host" or "host:port", lower case
	open   *net.Dialer
	public *net.Dialer
}

func newGuard(allow []string, dialTimeout time.Duration) *guard {
	g := &guard{
		allow: make(map[string]bool, len(allow)),
		open:  &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second},
	}
	for _, h := range allow {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			g.allow[h] = true
		}
	}
	g.public = &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second, Control: control}
	return g
}

func control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &RefusedError{Addr: address, Why: "not an IP address"}
	}
	if why := BlockedReason(ap.Addr()); why != "" {
		return &RefusedError{Addr: ap.Addr().Unmap().String(), Why: why}
	}
	return nil
}

// allowed reports whether a URL host (host or host:port) is allow-listed.
func (g *guard) allowed(hostport string) bool {
	hostport = strings.ToLower(hostport)
	if g.allow[hostport] {
		return true
	}
	host, _, err := net.SplitHostPort(hostport)
	return err == nil && g.allow[host]
}

func (g *guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if g.allowed(addr) {
		return g.open.DialContext(ctx, network, addr)
	}
	return g.public.DialContext(ctx, network, addr)
}
