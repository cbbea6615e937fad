package node

import (
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/profile/token"
)

// announce logs, once the node serves, the addresses a newcomer opens
// first, and warns of a loopback issuer whose port is not the listener's:
// discovery would send every client to a port where nothing listens.
func (n *Node) announce(public, ops net.Addr) {
	attrs := []any{"ops", "http://" + browsable(ops) + "/healthz", "metrics", "http://" + browsable(ops) + "/metrics"}
	cur := n.holder.Current()
	if cur == nil {
		n.log.Info("open", attrs...)
		return
	}
	snap := cur.Snapshot()
	if u := demoURL(snap); u != "" {
		attrs = append(attrs, "demo", u)
	}
	for _, p := range servedTokenProfiles(snap) {
		if slices.Contains(p.Endpoints, config.EndpointDiscovery) {
			attrs = append(attrs, "discovery."+p.Name, strings.TrimSuffix(p.Issuer, "/")+token.PathDiscovery)
		}
		if w := issuerPortMismatch(p.Issuer, public); w != "" {
			n.log.Warn("the issuer's port is not the public listener's: discovery sends clients to a port where this node does not listen; "+
				"set the variable the issuer is built from (PUBLIC_BASE_URL in the example configuration) or KEYGATE_LISTEN_ADDR so that they agree",
				"profile", p.Name, "issuer_port", w, "listener", public.String())
		}
	}
	n.log.Info("open", attrs...)
}

// servedTokenProfiles are the token profiles of the node's role, by name.
func servedTokenProfiles(snap *config.Snapshot) []*config.Profile {
	role := snap.ServiceRoles[snap.Role]
	if role == nil {
		return nil
	}
	var out []*config.Profile
	for _, name := range slices.Sorted(slices.Values(role.Profiles)) {
		if p := snap.Profiles[name]; p != nil && p.Type == config.ProfileToken {
			out = append(out, p)
		}
	}
	return out
}

// demoURL is the demo page of the role, on its token profile's origin,
// or "" when the role serves none.
func demoURL(snap *config.Snapshot) string {
	role := snap.ServiceRoles[snap.Role]
	if role == nil {
		return ""
	}
	for _, name := range role.Profiles {
		p := snap.Profiles[name]
		if p == nil || p.Type != config.ProfileDemo || snap.Profiles[p.TokenProfile] == nil {
			continue
		}
		if u, err := url.Parse(snap.Profiles[p.TokenProfile].Issuer); err == nil {
			return u.Scheme + "://" + u.Host + strings.TrimSuffix(p.Path, "/") + "/"
		}
	}
	return ""
}

// issuerPortMismatch returns the issuer's port when the issuer names a
// loopback host and a port other than the listener's ("" otherwise). A
// non-loopback issuer is reached through a proxy or a load balancer, whose
// port is not the node's business.
func issuerPortMismatch(issuer string, listener net.Addr) string {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" {
		return ""
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	_, lport, err := net.SplitHostPort(listener.String())
	if err != nil || port == lport {
		return ""
	}
	return port
}

// browsable is addr as a browser on this machine reaches it: an
// unspecified host (0.0.0.0, ::) is localhost.
func browsable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
