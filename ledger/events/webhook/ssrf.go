package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// Resolver resolves host names (net.DefaultResolver; tests inject one).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Policy decides which webhook URLs and addresses eventsd may reach. Only
// public unicast addresses are allowed, unless an operator allowlist
// (OBOL_WEBHOOK_ALLOW_CIDRS) admits a range; obol dev also allows loopback
// (and plain http to it).
type Policy struct {
	// Allow admits these ranges even when they are not public.
	Allow []netip.Prefix
	// DevLoopback allows loopback addresses, and http:// to them (obol dev).
	DevLoopback bool
	// Resolver resolves hosts (default net.DefaultResolver).
	Resolver Resolver
}

// URLError is a refused webhook URL: a stable code and a message that
// never contains the URL.
type URLError struct {
	Code, Message string
}

func (e *URLError) Error() string { return e.Message }

// ErrAddressRefused wraps every refusal of an address (at creation and at
// dial time).
var ErrAddressRefused = errors.New("address refused")

// ParseAllowCIDRs parses a comma-separated list of CIDR prefixes.
func ParseAllowCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("OBOL_WEBHOOK_ALLOW_CIDRS entry %d is not a CIDR prefix (e.g. 10.1.0.0/16)", i+1)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

var (
	cgnat     = netip.MustParsePrefix("100.64.0.0/10")
	thisNet   = netip.MustParsePrefix("0.0.0.0/8")
	ietf      = netip.MustParsePrefix("192.0.0.0/24")
	bench     = netip.MustParsePrefix("198.18.0.0/15")
	reserved  = netip.MustParsePrefix("240.0.0.0/4")
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	nat64Loc  = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour = netip.MustParsePrefix("2002::/16")
	teredo    = netip.MustParsePrefix("2001::/32")
	// global6 is IPv6 global unicast: every other IPv6 address (IPv4-
	// compatible ::/96, IPv4-translated ::ffff:0:0:0/96, site-local
	// fec0::/10, discard-only 100::/64, ...) is not public.
	global6  = netip.MustParsePrefix("2000::/3")
	docV4    = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24")}
	docV6    = netip.MustParsePrefix("2001:db8::/32")
	metadata = []netip.Addr{netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("fd00:ec2::254"), netip.MustParseAddr("100.100.100.200")}
)

// refusal says why an address is not public, or "".
func refusal(ip netip.Addr) string {
	ip = ip.Unmap()
	for _, m := range metadata {
		if ip == m {
			return "a cloud metadata address"
		}
	}
	switch {
	case ip.IsLoopback():
		return "a loopback address"
	case ip.IsUnspecified():
		return "an unspecified address"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return "a link-local address"
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		return "a multicast address"
	case ip.IsPrivate():
		return "a private address"
	case cgnat.Contains(ip):
		return "a shared (CGNAT) address"
	case thisNet.Contains(ip), ietf.Contains(ip), bench.Contains(ip), reserved.Contains(ip), docV6.Contains(ip), teredo.Contains(ip), nat64Loc.Contains(ip):
		return "a reserved address"
	case ip.Is4() && ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "a broadcast address"
	}
	for _, p := range docV4 {
		if p.Contains(ip) {
			return "a reserved address"
		}
	}
	// IPv6 forms that embed an IPv4 address: judge the embedded one.
	if nat64.Contains(ip) {
		b := ip.As16()
		if r := refusal(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})); r != "" {
			return r + " (NAT64)"
		}
	}
	if sixToFour.Contains(ip) {
		b := ip.As16()
		if r := refusal(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})); r != "" {
			return r + " (6to4)"
		}
	}
	if ip.Is6() && !global6.Contains(ip) && !nat64.Contains(ip) {
		return "a reserved address (not IPv6 global unicast)"
	}
	return ""
}

// CheckAddr refuses an address that is not public unicast, unless the
// allowlist admits it (or it is loopback in obol dev).
func (p *Policy) CheckAddr(ip netip.Addr) error {
	ip = ip.Unmap()
	for _, a := range p.Allow {
		if a.Contains(ip) {
			return nil
		}
	}
	if p.DevLoopback && ip.IsLoopback() {
		return nil
	}
	if r := refusal(ip); r != "" {
		// The kind of address, not the address: the message reaches the
		// merchant (creation error, attempt error), and what a host name
		// resolves to inside the operator's network is not theirs to read.
		return fmt.Errorf("%w: the host is %s (allow it with OBOL_WEBHOOK_ALLOW_CIDRS)", ErrAddressRefused, r)
	}
	return nil
}

func (p *Policy) resolver() Resolver {
	if p.Resolver != nil {
		return p.Resolver
	}
	return net.DefaultResolver
}

// MaxURLLength bounds an endpoint URL.
const MaxURLLength = 2048

func urlErr(code, msg string) error { return &URLError{Code: code, Message: msg} }

// ParseURL checks an endpoint URL's form: absolute https (http only to
// loopback in obol dev), a host, no user info or fragment, a valid port.
func (p *Policy) ParseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, urlErr("field_required", "url is required")
	}
	if len(raw) > MaxURLLength {
		return nil, urlErr("url_invalid", fmt.Sprintf("url must be at most %d characters", MaxURLLength))
	}
	for _, r := range raw {
		if r <= ' ' || r == 0x7f {
			return nil, urlErr("url_invalid", "url must not contain spaces or control characters")
		}
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" {
		return nil, urlErr("url_invalid", "url must be an absolute https URL, e.g. https://example.com/webhooks")
	}
	if u.User != nil {
		return nil, urlErr("url_invalid", "url must not contain user info")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, urlErr("url_invalid", "url must not contain a fragment")
	}
	host := u.Hostname()
	if host == "" {
		return nil, urlErr("url_invalid", "url must have a host")
	}
	if port := u.Port(); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return nil, urlErr("url_invalid", "url port must be 1-65535")
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, urlErr("url_invalid", "url port must be 1-65535")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !p.DevLoopback || !isLoopbackHost(host) {
			return nil, urlErr("url_insecure", "url must use https (plain http only to loopback in obol dev)")
		}
	default:
		return nil, urlErr("url_invalid", "url must be an absolute https URL, e.g. https://example.com/webhooks")
	}
	return u, nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// CheckURL parses raw (ParseURL) and resolves its host: every address must
// pass CheckAddr. A host that does not resolve is refused.
func (p *Policy) CheckURL(ctx context.Context, raw string) (*url.URL, error) {
	u, err := p.ParseURL(raw)
	if err != nil {
		return nil, err
	}
	addrs, err := p.lookup(ctx, u.Hostname())
	if err != nil {
		return nil, urlErr("url_unresolvable", "url's host does not resolve")
	}
	for _, a := range addrs {
		if err := p.CheckAddr(a); err != nil {
			return nil, urlErr("url_address_refused", "url's host resolves to an address webhooks may not reach: "+strings.TrimPrefix(err.Error(), ErrAddressRefused.Error()+": "))
		}
	}
	return u, nil
}

func (p *Policy) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{ip}, nil
	}
	addrs, err := p.resolver().LookupNetIP(ctx, "ip", host)
	if err == nil && len(addrs) == 0 {
		err = errors.New("no addresses")
	}
	return addrs, err
}

// control refuses, at connect time, an address the policy refuses: the
// address actually dialled, so a host that resolves to a public address
// when checked and to a private one when used (DNS rebinding) is caught.
func (p *Policy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparsable address", ErrAddressRefused)
	}
	return p.CheckAddr(ap.Addr())
}

// DialContext resolves with the policy's resolver and connects to the first
// address that answers, every one checked by the dialer's Control hook.
func (p *Policy) DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	dd := *d
	dd.Control = p.control
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		pn, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, err
		}
		addrs, err := p.lookup(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("resolve: %w", err)
		}
		var first error
		for _, a := range addrs {
			c, err := dd.DialContext(ctx, network, netip.AddrPortFrom(a.Unmap(), uint16(pn)).String())
			if err == nil {
				return c, nil
			}
			if first == nil {
				first = err
			}
		}
		return nil, first
	}
}
