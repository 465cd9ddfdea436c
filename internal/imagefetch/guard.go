package imagefetch

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// The guard follows stripe/smokescreen's classification: anything that is
// not global unicast is refused first (a catch-all, so a range nobody
// thought of is refused too), then the global unicast ranges that still
// reach inside (private, carrier-grade NAT, the metadata services, the
// special-purpose registries), then the IPv6 forms that embed an IPv4
// address and so could name any of the above.
//
// An address is classified without its zone: netip.Prefix.Contains is false
// for every zoned address, which let [::1%lo] through a list of prefixes.
// A zoned address is refused whatever it is, since only link-local
// addresses have zones.

// blocked lists global unicast ranges an image URL may not reach.
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
	{netip.MustParsePrefix("192.0.2.0/24"), "a documentation address"},
	{netip.MustParsePrefix("198.51.100.0/24"), "a documentation address"},
	{netip.MustParsePrefix("203.0.113.0/24"), "a documentation address"},
	{netip.MustParsePrefix("192.88.99.0/24"), "a 6to4 relay address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
	{netip.MustParsePrefix("224.0.0.0/4"), "a multicast address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"},
	{netip.MustParsePrefix("::/128"), "an unspecified address"},
	{netip.MustParsePrefix("::1/128"), "a loopback address"},
	{netip.MustParsePrefix("fc00::/7"), "a private address"},
	{netip.MustParsePrefix("fe80::/10"), "a link-local address"},
	{netip.MustParsePrefix("fec0::/10"), "a site-local address"},
	{netip.MustParsePrefix("ff00::/8"), "a multicast address"},
	{netip.MustParsePrefix("100::/64"), "a discard-only address"},
	{netip.MustParsePrefix("2001:db8::/32"), "a documentation address"},
	{netip.MustParsePrefix("2001:10::/28"), "an ORCHID address"},
	{netip.MustParsePrefix("2001:20::/28"), "an ORCHID address"},
	// Teredo (2001::/32) lies inside the IETF protocol block; its client
	// address is the last 32 bits, inverted, and reaches wherever the
	// relay lets it.
	{netip.MustParsePrefix("2001::/32"), "a Teredo address"},
	{netip.MustParsePrefix("2001::/23"), "an IETF protocol address"},
	{netip.MustParsePrefix("3fff::/20"), "a documentation address"},
	{netip.MustParsePrefix("5f00::/16"), "a segment-routing address"},
}

// embedding are IPv6 ranges whose addresses carry an IPv4 address: where
// it sits, and what the form is called. The whole range is refused (no
// image host needs one of them), and the reason names the IPv4 address.
var embedding = []struct {
	prefix netip.Prefix
	at     int // byte offset of the IPv4 address
	why    string
}{
	{netip.MustParsePrefix("64:ff9b::/96"), 12, "a NAT64 address"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), 12, "a local-use NAT64 address"},
	{netip.MustParsePrefix("2002::/16"), 2, "a 6to4 address"},
	{netip.MustParsePrefix("::/96"), 12, "an IPv4-compatible address"},
}

// BlockedReason says why an address may not be reached, or "" when it may.
func BlockedReason(a netip.Addr) string {
	if !a.IsValid() {
		return "not an IP address"
	}
	zone := a.Zone()
	a = a.WithZone("").Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	why := addrReason(a)
	if why == "" && zone != "" {
		why = "an address with a zone"
	} else if zone != "" {
		why += " (with zone " + zone + ")"
	}
	return why
}

func addrReason(a netip.Addr) string {
	for _, b := range blocked {
		if b.prefix.Contains(a) {
			return b.why
		}
	}
	for _, e := range embedding {
		if e.prefix.Contains(a) {
			b := a.As16()
			v4 := netip.AddrFrom4([4]byte(b[e.at : e.at+4]))
			if inner := addrReason(v4); inner != "" {
				return fmt.Sprintf("%s (embeds %s, %s)", e.why, v4, inner)
			}
			return fmt.Sprintf("%s (embeds %s)", e.why, v4)
		}
	}
	// The catch-all: what the explicit lists miss and is still not a
	// global unicast address (broadcast, say) is refused too.
	if !a.IsGlobalUnicast() || a.IsLoopback() {
		return "not a global unicast address"
	}
	return ""
}

// HostReason says why a URL's host may not be fetched, before any DNS
// lookup, or "" when it may be tried (the dial checks the resolved address
// again): an IP literal in a blocked range or with a zone, or a host made
// of numbers that is no plain IP address ("2130706433", "127.1",
// "0x7f.0.0.1"), which some resolvers read as an address and others send
// to DNS.
func HostReason(host string) string {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if h == "" {
		return "no host"
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return BlockedReason(a)
	}
	if strings.ContainsAny(h, "%:") {
		return "not a host name or an IP address"
	}
	// A trailing dot makes a name absolute; after a number it makes
	// "127.0.0.1." a host that is no plain IP address.
	labels := strings.Split(strings.TrimSuffix(h, "."), ".")
	if numericLabel(labels[len(labels)-1]) {
		return "a numeric host that is no plain IP address"
	}
	return ""
}

// numericLabel is a label that some address parser reads as a number:
// decimal, octal (a leading 0) or hexadecimal (0x…).
func numericLabel(s string) bool {
	if s == "" {
		return false
	}
	digits := "0123456789"
	if l := strings.ToLower(s); strings.HasPrefix(l, "0x") {
		s, digits = l[2:], "0123456789abcdef"
		if s == "" {
			return true // "0x" alone is zero to inet_aton
		}
	}
	return strings.Trim(s, digits) == ""
}

// RefusedError is a URL the guard would not connect to.
type RefusedError struct {
	Addr string
	Why  string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused to connect to %s: %s (allow-list the host to permit it)", e.Addr, e.Why)
}

// Allowed reports whether a URL host (host or host:port) is in allow,
// whose entries are "host" or "host:port" in any case.
func Allowed(allow []string, hostport string) bool {
	hostport = strings.ToLower(hostport)
	host, _, err := net.SplitHostPort(hostport)
	for _, a := range allow {
		a = strings.ToLower(strings.TrimSpace(a))
		if a != "" && (a == hostport || (err == nil && a == host)) {
			return true
		}
	}
	return false
}

// CheckURL refuses, before any connection, an image URL whose host the
// guard would refuse whatever DNS says; allow-listed hosts pass.
func CheckURL(u *url.URL, allow []string) error {
	if Allowed(allow, u.Host) {
		return nil
	}
	if why := HostReason(u.Hostname()); why != "" {
		return &RefusedError{Addr: u.Hostname(), Why: why}
	}
	return nil
}

// guard dials only public addresses, except for allow-listed hosts. The check
// runs in the dialer's Control function, which sees the address after DNS
// resolution and is called for every connection, redirects included, so
// neither a DNS name pointing inside nor a redirect can get past it.
type guard struct {
	allow  []string
	open   *net.Dialer
	public *net.Dialer
}

func newGuard(allow []string, dialTimeout time.Duration) *guard {
	return &guard{
		allow:  allow,
		open:   &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second},
		public: &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second, Control: control},
	}
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

func (g *guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if Allowed(g.allow, addr) {
		return g.open.DialContext(ctx, network, addr)
	}
	return g.public.DialContext(ctx, network, addr)
}
