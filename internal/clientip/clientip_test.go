package clientip

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func request(peer string, xff ...string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.SetRequestURI("/authn/login")
	for _, v := range xff {
		req.Header.Add(fasthttp.HeaderXForwardedFor, v)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP(peer), Port: 40000}, nil)
	return &ctx
}

func TestClientIP(t *testing.T) {
	lb := []string{"10.0.0.0/8", "fd00::/8", "192.0.2.7"}
	tests := []struct {
		name    string
		trusted []string
		peer    string
		xff     []string // header lines
		want    string
	}{
		{"no trusted proxies: header ignored", nil, "10.0.0.2", []string{"203.0.113.9"}, "10.0.0.2"},
		{"untrusted peer: header ignored", lb, "198.51.100.4", []string{"203.0.113.9"}, "198.51.100.4"},
		{"untrusted peer spoofing a trusted hop", lb, "198.51.100.4", []string{"203.0.113.9, 10.0.0.3"}, "198.51.100.4"},
		{"trusted peer, no header", lb, "10.0.0.2", nil, "10.0.0.2"},
		{"trusted peer, empty header", lb, "10.0.0.2", []string{""}, "10.0.0.2"},
		{"one proxy", lb, "10.0.0.2", []string{"203.0.113.9"}, "203.0.113.9"},
		{"spoofed leftmost entry", lb, "10.0.0.2", []string{"1.1.1.1, 203.0.113.9"}, "203.0.113.9"},
		{"spoofed trusted-looking leftmost entry", lb, "10.0.0.2", []string{"10.9.9.9, 203.0.113.9"}, "203.0.113.9"},
		{"several proxies", lb, "10.0.0.2", []string{"1.1.1.1, 203.0.113.9, 192.0.2.7, 10.0.0.5"}, "203.0.113.9"},
		{"several header lines", lb, "10.0.0.2", []string{"1.1.1.1", "203.0.113.9, 10.0.0.5"}, "203.0.113.9"},
		{"client on the last line", lb, "10.0.0.2", []string{"1.1.1.1, 10.0.0.5", "203.0.113.9"}, "203.0.113.9"},
		{"every entry trusted", lb, "10.0.0.2", []string{"10.0.0.9, 10.0.0.5"}, "10.0.0.9"},
		{"empty elements skipped", lb, "10.0.0.2", []string{" , 203.0.113.9 ,, "}, "203.0.113.9"},
		{"tabs and spaces", lb, "10.0.0.2", []string{"1.1.1.1,\t203.0.113.9 "}, "203.0.113.9"},
		{"malformed rightmost: the peer", lb, "10.0.0.2", []string{"203.0.113.9, garbage"}, "10.0.0.2"},
		{"malformed behind a trusted hop: that hop", lb, "10.0.0.2", []string{"1.1.1.1, unknown, 10.0.0.5"}, "10.0.0.5"},
		{"malformed left of the client: ignored", lb, "10.0.0.2", []string{"<script>, 203.0.113.9"}, "203.0.113.9"},
		{"bracketed IPv4 is malformed", lb, "10.0.0.2", []string{"[203.0.113.9]"}, "10.0.0.2"},
		{"IPv6 zone is malformed", lb, "10.0.0.2", []string{"fe80::1%eth0"}, "10.0.0.2"},
		{"hostname is malformed", lb, "10.0.0.2", []string{"client.example"}, "10.0.0.2"},
		{"IPv4 with port", lb, "10.0.0.2", []string{"203.0.113.9:4711"}, "203.0.113.9"},
		{"IPv6 client", lb, "10.0.0.2", []string{"2001:db8::1"}, "2001:db8::1"},
		{"IPv6 in brackets", lb, "10.0.0.2", []string{"[2001:db8::1]"}, "2001:db8::1"},
		{"IPv6 with port", lb, "10.0.0.2", []string{"[2001:db8::1]:4711, 10.0.0.5"}, "2001:db8::1"},
		{"IPv6 trusted peer and hops", lb, "fd00::1", []string{"2001:db8::66, 2001:db8::1, fd12::3"}, "2001:db8::1"},
		{"IPv6 untrusted peer: header ignored", lb, "2001:db8::2", []string{"2001:db8::1"}, "2001:db8::2"},
		{"IPv4-mapped client read as IPv4", lb, "10.0.0.2", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"IPv4-mapped trusted hop", lb, "10.0.0.2", []string{"203.0.113.9, ::ffff:10.0.0.5"}, "203.0.113.9"},
		{"single trusted address", lb, "192.0.2.7", []string{"203.0.113.9"}, "203.0.113.9"},
		{"next to a single trusted address", lb, "192.0.2.8", []string{"203.0.113.9"}, "192.0.2.8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.trusted)
			if err != nil {
				t.Fatal(err)
			}
			got := r.ClientIP(request(tt.peer, tt.xff...))
			if got.String() != tt.want {
				t.Errorf("ClientIP(peer %s, X-Forwarded-For %q) = %s, want %s", tt.peer, tt.xff, got, tt.want)
			}
		})
	}
}

func TestNilResolverIsThePeer(t *testing.T) {
	var r *Resolver
	if got := r.ClientIP(request("10.0.0.2", "203.0.113.9")); got != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("nil resolver: %s", got)
	}
	if got := r.ClientIP(request("::ffff:10.0.0.2")); !got.Is4() {
		t.Errorf("IPv4-mapped peer not read as IPv4: %s", got)
	}
}

func TestNew(t *testing.T) {
	r, err := New([]string{" 10.1.2.3/8", "::1", "::ffff:172.16.0.0/108", "2001:db8::/32 ", "", "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range r.Trusted() {
		got = append(got, p.String())
	}
	if want := "10.0.0.0/8 ::1/128 172.16.0.0/12 2001:db8::/32 192.0.2.7/32"; strings.Join(got, " ") != want {
		t.Errorf("trusted = %s, want %s", strings.Join(got, " "), want)
	}

	for _, bad := range []string{"10.0.0.0/33", "not-an-ip", "10.0.0.0/8/", "fe80::1%eth0", "::ffff:0:0/90", "10.0.0.256", "10.0.0.0/-1", "host.example/24"} {
		_, err := New([]string{"10.0.0.0/8", bad})
		if err == nil || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("New(%q): error %v, want one naming the entry", bad, err)
		}
	}
	_, err = New([]string{"x", "y"})
	if err == nil || !strings.Contains(err.Error(), `"x"`) || !strings.Contains(err.Error(), `"y"`) {
		t.Errorf("every bad entry should be named: %v", err)
	}
}
