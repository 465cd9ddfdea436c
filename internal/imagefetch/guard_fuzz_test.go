package imagefetch

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// The guard is checked over the many ways one address can be written. The
// fuzz targets' seed corpora run as plain tests in `go test ./...` (and so
// in `make test`); `make fuzz` lets the fuzzer search longer. The table
// test below generates every form of an address from every blocked range.

// form is one way to write an address as a URL host; refuse says the
// form is refused whatever the address (a zone, or an IPv6 form that
// embeds an IPv4 address other than the mapped one).
type form struct {
	host   string
	refuse bool
}

// forms writes addr in every way a URL host can name it: IP literals
// with and without zones, and, for IPv4, the IPv6 forms that embed it and
// the numeric spellings that inet_aton accepts.
func forms(a netip.Addr) []form {
	var out []form
	add := func(refuse bool, hosts ...string) {
		for _, h := range hosts {
			out = append(out, form{h, refuse})
		}
	}
	v6 := func(refuse bool, s string) { add(refuse, "["+s+"]"); add(true, "["+s+"%25lo]", "["+s+"%25eth0]") }
	if a.Is4() {
		b := a.As4()
		n := binary.BigEndian.Uint32(b[:])
		v4 := a.String()
		add(false, v4)
		// Numeric spellings other than the plain one are refused even for
		// a public address: resolvers disagree on what they mean.
		add(true, v4+".", fmt.Sprint(n), fmt.Sprintf("0x%x", n), fmt.Sprintf("0%o", n),
			fmt.Sprintf("0%o.0%o.0%o.0%o", b[0], b[1], b[2], b[3]),
			fmt.Sprintf("0x%x.0x%x.0x%x.0x%x", b[0], b[1], b[2], b[3]),
			fmt.Sprintf("%d.%d.%d", b[0], b[1], int(b[2])<<8|int(b[3])),
			fmt.Sprintf("%d.%d", b[0], n&0xffffff))
		for _, s := range []string{"::ffff:" + v4, fmt.Sprintf("::ffff:%x:%x", n>>16, n&0xffff), "0:0:0:0:0:ffff:" + v4} {
			v6(false, s)
		}
		for _, s := range []string{
			"::" + v4, "64:ff9b::" + v4, "64:ff9b:1::" + v4,
			fmt.Sprintf("2002:%x:%x::1", n>>16, n&0xffff),
			fmt.Sprintf("2001:0:4136:e378:8000:63bf:%x:%x", (^n)>>16, (^n)&0xffff), // Teredo, client inverted
		} {
			v6(true, s)
		}
		return out
	}
	v6(false, a.WithZone("").String())
	add(true, "["+a.WithZone("").String()+"%251]")
	return out
}

// public is what the standard library alone can say about an address: a
// global unicast address that is neither private nor loopback, without a
// zone. The guard may refuse more, never less.
func public(a netip.Addr) bool {
	u := a.Unmap()
	return a.Zone() == "" && u.IsGlobalUnicast() && !u.IsPrivate() && !u.IsLoopback() && !u.IsLinkLocalUnicast()
}

// hostRefused runs a URL host through the check the API and the fetcher
// both make before any connection.
func hostRefused(t *testing.T, host string) (bool, string) {
	u, err := url.Parse("http://" + host + ":8080/images/a.png")
	if err != nil {
		return true, "url.Parse: " + err.Error()
	}
	if err := CheckURL(u, nil); err != nil {
		return true, err.Error()
	}
	return false, ""
}

// checkAddr asserts what every form of a says.
func checkAddr(t *testing.T, a netip.Addr) {
	t.Helper()
	why := BlockedReason(a)
	if why == "" && !public(a) {
		t.Fatalf("%s is allowed, yet the standard library says it is not a public address", a)
	}
	if z := BlockedReason(a.WithZone("eth0")); a.Is6() && z == "" {
		t.Fatalf("%s%%eth0 is allowed: a zoned address must be refused", a)
	}
	for _, f := range forms(a) {
		refused, msg := hostRefused(t, f.host)
		switch {
		case why != "" && !refused:
			t.Fatalf("%s is blocked (%s), but its form %s passes the URL check", a, why, f.host)
		case f.refuse && !refused:
			t.Fatalf("form %s of %s passes the URL check: zoned, embedding and odd numeric forms are refused", f.host, a)
		case why == "" && !f.refuse && refused:
			t.Fatalf("form %s of the public %s is refused: %s", f.host, a, msg)
		}
	}
}

func FuzzAddressForms(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.100.100.200", "100.64.0.1",
		"0.0.0.0", "255.255.255.255", "224.0.0.1", "192.0.2.10", "8.8.8.8", "93.184.216.34",
		"::1", "::", "fe80::1", "fd00:ec2::254", "fc00::1", "ff02::1", "2001:db8::1", "2606:4700::1111",
		"2001:0:4136:e378:8000:63bf:3fff:fdd2", "2002:c0a8:101::1", "64:ff9b::7f00:1", "::7f00:1",
	} {
		a := netip.MustParseAddr(s)
		f.Add(a.AsSlice())
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var a netip.Addr
		switch {
		case len(raw) >= 16:
			a = netip.AddrFrom16([16]byte(raw[:16]))
		case len(raw) >= 4:
			a = netip.AddrFrom4([4]byte(raw[:4]))
		default:
			return
		}
		checkAddr(t, a)
		if a.Is4In6() {
			checkAddr(t, a.Unmap())
		}
	})
}

// FuzzHostReason: whatever the host, an IP literal that passes is public,
// and a name that passes does not end in a number.
func FuzzHostReason(f *testing.F) {
	for _, s := range []string{
		"cdn.example.com", "127.0.0.1", "[::1%25lo]", "2130706433", "0x7f.1", "127.1", "[fe80::1%25eth0]",
		"localhost", "a.b.c.123", "xn--bcher-kva.example", "[::ffff:10.0.0.1]", "1.2.3.4.", "8.8.8.8",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		u, err := url.Parse("http://" + host + "/x.png")
		if err != nil || u.Host != host {
			return
		}
		if CheckURL(u, nil) != nil {
			return
		}
		name := strings.TrimSuffix(u.Hostname(), ".")
		if a, err := netip.ParseAddr(name); err == nil {
			if !public(a) {
				t.Fatalf("host %q (%s) passes, yet it is not a public address", host, a)
			}
			return
		}
		labels := strings.Split(name, ".")
		if last := labels[len(labels)-1]; last != "" && strings.Trim(strings.ToLower(last), "0123456789abcdefx") == "" &&
			numericLabel(last) {
			t.Fatalf("host %q passes, yet it ends in the number %q", host, last)
		}
	})
}

// Every blocked range, at its first, last and a middle address, in every
// form: refused. A few public addresses: their plain forms pass.
func TestEveryFormOfEveryBlockedRange(t *testing.T) {
	var prefixes []netip.Prefix
	for _, b := range blocked {
		prefixes = append(prefixes, b.prefix)
	}
	for _, e := range embedding {
		prefixes = append(prefixes, e.prefix)
	}
	n := 0
	for _, p := range prefixes {
		first := p.Masked().Addr()
		last := lastAddr(p)
		for _, a := range []netip.Addr{first, last, middle(first, last)} {
			if BlockedReason(a) == "" {
				t.Errorf("%s of %s is allowed", a, p)
			}
			checkAddr(t, a)
			n += len(forms(a))
		}
	}
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1111", "2a00:1450:4001:82b::200e"} {
		a := netip.MustParseAddr(s)
		if why := BlockedReason(a); why != "" {
			t.Errorf("public %s refused: %s", a, why)
		}
		checkAddr(t, a)
		n += len(forms(a))
	}
	t.Logf("%d ranges, %d forms checked", len(prefixes), n)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// middle is an address halfway between first and last (bytewise average).
func middle(first, last netip.Addr) netip.Addr {
	x, y := first.AsSlice(), last.AsSlice()
	out := make([]byte, len(x))
	carry := 0
	for i := range x {
		v := carry*256 + int(x[i]) + int(y[i])
		out[i] = byte(v / 2)
		carry = v % 2
	}
	a, _ := netip.AddrFromSlice(out)
	return a
}
