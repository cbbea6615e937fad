// Package clientip decides which address a request comes from, for per-IP
// throttling and audit events, when the public listener may sit behind
// trusted reverse proxies (KEYGATE_TRUSTED_PROXIES).
//
// The rule:
//
//  1. The peer is the TCP connection's remote address (an IPv4-mapped IPv6
//     address is read as IPv4). With no trusted ranges, or a peer outside
//     them, the peer is the client and X-Forwarded-For is ignored: anyone
//     can send that header.
//  2. Otherwise X-Forwarded-For is read (every such header line, in order,
//     as one comma-separated list, RFC 9110 §5.3) and walked from the right,
//     the entry the nearest proxy appended, to the left. Empty elements are
//     skipped (RFC 9110 §5.6.1). An entry inside a trusted range is another
//     proxy: the walk goes on. The first entry outside every trusted range
//     is the client.
//  3. An entry that is not an address (not an IP, "IP:port", "[IPv6]" or
//     "[IPv6]:port"; an IPv6 zone counts as malformed) stops the walk, and
//     the client is the last trusted hop: the address of the proxy that
//     should have recorded a well-formed one. Likewise when every entry is
//     trusted, or there is no header: the client is the leftmost trusted
//     address reached.
//
// Never the leftmost entry blindly: whatever is left of the first entry a
// trusted proxy wrote is what the client sent. A malformed entry must not
// let the walk skip to those attacker-chosen entries, so it stops the walk
// at an address the attacker cannot choose. Only trust ranges that clients
// cannot connect from: a trusted peer's X-Forwarded-For is believed.
package clientip

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"github.com/valyala/fasthttp"
)

// Resolver finds a request's client address. A nil *Resolver trusts no
// proxy: the client is the peer. Safe for concurrent use; build it once.
type Resolver struct {
	trusted []netip.Prefix
}

// New builds a Resolver that trusts the given proxies: CIDR ranges
// ("10.0.0.0/8", "fd00::/8") or single addresses ("192.0.2.7", "::1").
// Blank entries are ignored. The error names every bad entry.
func New(proxies []string) (*Resolver, error) {
	r := &Resolver{}
	var bad []string
	for _, s := range proxies {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := ParseTrusted(s)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		r.trusted = append(r.trusted, p)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return r, nil
}

// ParseTrusted parses one trusted-proxy entry: a CIDR range or a single
// address. Host bits of a range are cleared ("10.1.2.3/8" is 10.0.0.0/8).
// IPv4-mapped IPv6 ("::ffff:10.0.0.0/104") is read as IPv4, as peers are.
func ParseTrusted(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR range (e.g. 10.0.0.0/8 or fd00::/8)", s)
		}
		if a := p.Addr(); a.Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("%q mixes IPv4-mapped and other IPv6 addresses; write the IPv4 range", s)
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR range (e.g. 192.0.2.7 or 10.0.0.0/8)", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Trusted lists the trusted ranges (for logs).
func (r *Resolver) Trusted() []netip.Prefix {
	if r == nil {
		return nil
	}
	return append([]netip.Prefix(nil), r.trusted...)
}

// ClientIP is the request's client address by the package's rule.
func (r *Resolver) ClientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	peer := Peer(ctx)
	if r == nil || len(r.trusted) == 0 || !r.isTrusted(peer) {
		return peer
	}
	return r.walk(peer, ctx.Request.Header.PeekAll(fasthttp.HeaderXForwardedFor))
}

// Peer is the connection's remote address (IPv4-mapped read as IPv4;
// 0.0.0.0 when the connection has no IP address).
func Peer(ctx *fasthttp.RequestCtx) netip.Addr {
	a, ok := netip.AddrFromSlice(ctx.RemoteIP())
	if !ok {
		return netip.IPv4Unspecified()
	}
	return a.Unmap()
}

// walk applies rules 2 and 3 to the X-Forwarded-For lines, given a
// trusted peer.
func (r *Resolver) walk(peer netip.Addr, lines [][]byte) netip.Addr {
	hop := peer // the nearest address known to be a trusted proxy's
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for len(line) > 0 {
			var entry []byte
			if j := bytes.LastIndexByte(line, ','); j >= 0 {
				entry, line = line[j+1:], line[:j]
			} else {
				entry, line = line, nil
			}
			entry = bytes.TrimSpace(entry)
			if len(entry) == 0 {
				continue
			}
			a, ok := parseEntry(entry)
			if !ok {
				return hop
			}
			if !r.isTrusted(a) {
				return a
			}
			hop = a
		}
	}
	return hop
}

// parseEntry reads one X-Forwarded-For element: an IP address, optionally
// with a port ("192.0.2.1:4711", "[2001:db8::1]:4711") or in brackets
// ("[2001:db8::1]"), as some proxies write them.
func parseEntry(b []byte) (netip.Addr, bool) {
	s := string(b)
	a, err := netip.ParseAddr(s)
	if err != nil {
		if ap, err2 := netip.ParseAddrPort(s); err2 == nil {
			a, err = ap.Addr(), nil
		} else if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
			a, err = netip.ParseAddr(s[1 : len(s)-1])
			if err == nil && !a.Is6() {
				err = fmt.Errorf("bracketed IPv4")
			}
		}
	}
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func (r *Resolver) isTrusted(a netip.Addr) bool {
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
