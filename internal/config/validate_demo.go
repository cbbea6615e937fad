package config

import "slices"

// checkDemoProfile: the token profile it signs in at, its client (a
// public client of that profile that may use the code flow: the page runs
// in the browser and holds no secret) and the user to sign in as.
func (l *loader) checkDemoProfile(path string, p *Profile) {
	if l.required(path+".token-profile", p.TokenProfile) {
		l.ref(path+".token-profile", "profiles", p.TokenProfile, ProfileToken)
		// The page sends its authorization request from the browser,
		// which cannot push it (that needs the client's own request).
		if tp := l.raw.Profiles[p.TokenProfile]; tp != nil && tp.Type == ProfileToken && tp.PushedAuthorizationRequests.Required {
			l.at(path+".token-profile", "profile %s requires pushed authorization requests, which the demo page does not send", l.q(path+".token-profile", p.TokenProfile))
		}
	}
	if l.required(path+".client", p.Client) {
		switch c, ok := l.raw.Clients[p.Client]; {
		case !ok:
			if why, dropped := l.dropped["clients/"+p.Client]; dropped {
				l.at(path+".client", "refers to client %s, but %s", l.q(path+".client", p.Client), why)
			} else {
				l.at(path+".client", "refers to client %s, which is not defined", l.q(path+".client", p.Client))
			}
		case c.Profile != p.TokenProfile:
			l.at(path+".client", "client %s belongs to profile %q, not to the token-profile %q", l.q(path+".client", p.Client), c.Profile, p.TokenProfile)
		case !c.Secret.IsZero() || len(c.PublicKeys) > 0 || c.TokenEndpointAuthMethod != "" && c.TokenEndpointAuthMethod != AuthNone:
			l.at(path+".client", "client %s must be a public client (no secret, token-endpoint-auth-method none): the page runs in the browser", l.q(path+".client", p.Client))
		case !slices.Contains(c.GrantTypes, GrantAuthorizationCode):
			l.at(path+".client", "client %s must be allowed the authorization_code grant", l.q(path+".client", p.Client))
		case c.RequirePushedAuthorizationRequests:
			l.at(path+".client", "client %s requires pushed authorization requests, which the demo page does not send", l.q(path+".client", p.Client))
		}
	}
	l.required(path+".user.username", p.User.Username)
	if p.User.Password.IsZero() {
		l.at(path+".user.password", "is required (the demo user's password)")
	}
}
