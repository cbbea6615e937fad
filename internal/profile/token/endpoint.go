package token

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/clientauth"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/oauth"
)

// MaxFormBytes caps the body of the POST endpoints. The public listener
// caps bodies too (64 KiB); this keeps the profile safe on any server.
const MaxFormBytes = 64 << 10

// errTooLarge is invalid_request with 413 (RFC 9110 §15.5.14).
var errTooLarge = func() *oauth.Error {
	e := *oauth.ErrInvalidRequest.WithDescription("request body too large")
	e.Status = http.StatusRequestEntityTooLarge
	return &e
}()

// form is the parsed body of a POST to token, introspect or revoke. Each
// parameter may appear once (RFC 6749 §3.2), except resource and
// audience, which RFC 8707 §2 and RFC 8693 §2.1 allow repeatedly. Unknown parameters are ignored
// (RFC 6749 §3.2).
type form struct {
	creds clientauth.Credentials

	grantType string
	scope     string
	hasScope  bool
	resources []string // resource (RFC 8707) and audience
	token     string   // introspect, revoke
	hasToken  bool
	hint      string // token_type_hint

	code         string // authorization_code grant
	redirectURI  string
	codeVerifier string
	refreshToken string // refresh_token grant
	deviceCode   string // device_code grant

	// token-exchange grant (RFC 8693 §2.1)
	subjectToken       string
	subjectTokenType   string
	actorToken         string
	actorTokenType     string
	requestedTokenType string
}

// onceParams are the parameters a form may carry once, each with its bit
// in the set of those seen and where its value goes. resource and
// audience, which may repeat (RFC 8707 §2, RFC 8693 §2.1), are not among
// them.
var onceParams = map[string]struct {
	bit int
	set func(f *form, v string)
}{
	"grant_type":            {1 << 0, func(f *form, v string) { f.grantType = v }},
	"scope":                 {1 << 1, func(f *form, v string) { f.scope, f.hasScope = v, true }},
	"client_id":             {1 << 2, func(f *form, v string) { f.creds.ClientID = v }},
	"client_secret":         {1 << 3, func(f *form, v string) { f.creds.ClientSecret, f.creds.HasClientSecret = v, true }},
	"client_assertion_type": {1 << 4, func(f *form, v string) { f.creds.ClientAssertionType = v }},
	"client_assertion":      {1 << 5, func(f *form, v string) { f.creds.ClientAssertion, f.creds.HasAssertion = v, true }},
	"token":                 {1 << 6, func(f *form, v string) { f.token, f.hasToken = v, true }},
	"token_type_hint":       {1 << 7, func(f *form, v string) { f.hint = v }},
	"code":                  {1 << 9, func(f *form, v string) { f.code = v }},
	"redirect_uri":          {1 << 10, func(f *form, v string) { f.redirectURI = v }},
	"code_verifier":         {1 << 11, func(f *form, v string) { f.codeVerifier = v }},
	"refresh_token":         {1 << 12, func(f *form, v string) { f.refreshToken = v }},
	"device_code":           {1 << 18, func(f *form, v string) { f.deviceCode = v }},
	"subject_token":         {1 << 13, func(f *form, v string) { f.subjectToken = v }},
	"subject_token_type":    {1 << 14, func(f *form, v string) { f.subjectTokenType = v }},
	"actor_token":           {1 << 15, func(f *form, v string) { f.actorToken = v }},
	"actor_token_type":      {1 << 16, func(f *form, v string) { f.actorTokenType = v }},
	"requested_token_type":  {1 << 17, func(f *form, v string) { f.requestedTokenType = v }},
}

// parseForm parses the request once. Errors are invalid_request.
func parseForm(c *fiber.Ctx) (*form, *oauth.Error) {
	req := &c.Context().Request
	if e := checkFormRequest(req); e != nil {
		return nil, e
	}
	f := &form{}
	if auth := req.Header.Peek(fasthttp.HeaderAuthorization); len(auth) > 0 {
		f.creds.Authorization = string(auth)
	}
	var dup string
	seen := 0
	once := func(bit int, key []byte) bool {
		if seen&bit != 0 {
			dup = string(key)
			return false
		}
		seen |= bit
		return true
	}
	req.PostArgs().VisitAll(func(key, value []byte) {
		if dup != "" {
			return
		}
		if p, ok := onceParams[string(key)]; ok {
			if once(p.bit, key) {
				p.set(f, string(value))
			}
		} else if string(key) == "resource" || string(key) == "audience" {
			f.resources = append(f.resources, string(value))
		}
	})
	if dup != "" {
		return nil, oauth.ErrInvalidRequest.WithDescription("parameter " + sanitizeName(dup) + " is repeated")
	}
	return f, nil
}

// checkFormRequest checks what every POST endpoint's form needs: a
// bounded body (413 over MaxFormBytes) of the form media type.
func checkFormRequest(req *fasthttp.Request) *oauth.Error {
	if len(req.Body()) > MaxFormBytes || req.Header.ContentLength() > MaxFormBytes {
		return errTooLarge
	}
	ct := req.Header.ContentType()
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	if !bytes.EqualFold(bytes.TrimSpace(ct), []byte("application/x-www-form-urlencoded")) {
		return oauth.ErrInvalidRequest.WithDescription("the body must be application/x-www-form-urlencoded")
	}
	return nil
}

// sanitizeName keeps a known parameter name (only known names reach it).
func sanitizeName(s string) string {
	if len(s) > 32 {
		return s[:32]
	}
	return s
}

// authenticate authenticates the caller of a POST endpoint. With
// allowPublic, a request that carries no credentials but the client_id of
// a public client (token-endpoint-auth-method none) identifies that client
// (RFC 6749 §2.3, §3.2.1; RFC 7009 §2.1): the token and revocation
// endpoints allow it, introspection does not.
func (p *Profile) authenticate(ctx context.Context, f *form, allowPublic bool) (*client, *oauth.Error) {
	cr := &f.creds
	if allowPublic && cr.ClientID != "" && cr.Authorization == "" && !cr.HasClientSecret &&
		!cr.HasAssertion && cr.ClientAssertionType == "" {
		if ac := p.auth.Client(cr.ClientID); ac != nil && ac.Method == config.AuthNone {
			if cl := p.clients[ac.ID]; cl != nil {
				return cl, nil
			}
		}
	}
	ac, err := p.auth.Authenticate(ctx, cr)
	if err != nil {
		return nil, err
	}
	cl := p.clients[ac.ID]
	if cl == nil { // cannot happen: both are built from the same clients
		return nil, oauth.ErrInvalidClient.WithDescription("client authentication failed")
	}
	return cl, nil
}

// fail writes an OAuth error response, counts it and logs its cause.
func (p *Profile) fail(c *fiber.Ctx, endpoint string, e *oauth.Error) error {
	return p.refuse(c, endpoint, nil, e)
}

// refuse is fail for a request whose form was read: its refusal line
// names the client the form claims.
func (p *Profile) refuse(c *fiber.Ctx, endpoint string, f *form, e *oauth.Error) error {
	e = oauth.Retryable(e)
	if p.metrics != nil {
		p.metrics.OAuthError(p.name, endpoint, e.Code, reasonOf(e))
	}
	level := slog.LevelDebug
	if e.Status >= 500 {
		level = slog.LevelError
	} else if e.Code != errAuthorizationPending.Code && e.Code != errSlowDown.Code {
		// A waiting device answers its every poll with these: the normal
		// course of the device flow, not a refusal worth a line.
		client := ""
		if f != nil {
			client = f.creds.ClaimedID()
		}
		p.logRefusal(c, endpoint, client, e)
	}
	// The cause (debug, or error for a failure of ours) holds internal
	// detail; the info line above is what an operator reads first.
	if p.log.Enabled(c.Context(), level) {
		attrs := []any{"profile", p.name, "endpoint", endpoint, "error", e.Code}
		if e.Cause != nil {
			attrs = append(attrs, "cause", e.Cause.Error())
		}
		p.log.Log(c.Context(), level, "oauth error", attrs...)
	}
	// A 401 carries a Basic challenge unless the client authenticated in
	// the body (see oauth.Write).
	oauth.Write(&c.Context().Response, e, p.issuer)
	return nil
}

// tokenProof checks the DPoP proof of a request to the token endpoint
// (RFC 9449 §5) against the client's dpop mode and returns its key's
// thumbprint, "" without a proof. A request without a DPoP header costs
// one header lookup.
func (p *Profile) tokenProof(c *fiber.Ctx, cl *client) (string, *oauth.Error) {
	raw, e := proofHeader(c)
	switch {
	case e != nil:
		return "", p.withNonce(c, e)
	case raw == "" && cl.dpop == config.DPoPRequired:
		return "", p.withNonce(c, errInvalidDPoPProof.WithDescription("this client must send a DPoP proof").WithReason("dpop_required"))
	case raw == "":
		return "", nil
	case cl.dpop == config.DPoPOff:
		return "", oauth.ErrInvalidRequest.WithDescription("DPoP is off for this client: send no DPoP header").WithReason("dpop_off")
	}
	proof, e := p.dpop.check(c.Context(), raw, http.MethodPost, p.htuToken, "")
	p.withNonce(c, nil)
	if e != nil {
		return "", e
	}
	return proof.jkt, nil
}

// withNonce gives the response a fresh DPoP-Nonce when the profile
// demands nonces (RFC 9449 §8: with use_dpop_nonce, and with any answer
// to a proof, so the client always holds a current one), and returns e.
func (p *Profile) withNonce(c *fiber.Ctx, e *oauth.Error) *oauth.Error {
	if p.dpop.nonce {
		c.Context().Response.Header.Set(headerDPoPNonce, p.dpop.currentNonce())
	}
	return e
}

// sendJSON sends a token-bearing JSON response (RFC 6749 §5.1 headers).
func sendJSON(c *fiber.Ctx, body []byte) error {
	r := &c.Context().Response
	r.SetStatusCode(http.StatusOK)
	r.Header.SetContentType("application/json")
	oauth.NoStore(r)
	r.SetBodyRaw(body)
	return nil
}

// serveToken is the token endpoint (RFC 6749 §3.2): parse once,
// authenticate the client, check the grant is allowed, then hand over to
// the grant's handler. Client authentication, grant permission, scope and
// audience policy live here so no grant can skip them.
func (p *Profile) serveToken(c *fiber.Ctx) error {
	const ep = config.EndpointToken
	f, e := parseForm(c)
	if e != nil {
		return p.fail(c, ep, e)
	}
	if f.grantType == "" {
		return p.refuse(c, ep, f, oauth.ErrInvalidRequest.WithDescription("grant_type is required").WithReason("grant_type_missing"))
	}
	cl, e := p.authenticate(c.Context(), f, true)
	if e != nil {
		return p.refuse(c, ep, f, e)
	}
	g, ok := p.grants[f.grantType]
	if !ok {
		return p.refuse(c, ep, f, oauth.ErrUnsupportedGrantType.WithDescription("unsupported grant_type").WithReason("grant_type_unsupported"))
	}
	if !cl.grants[f.grantType] {
		return p.refuse(c, ep, f, oauth.ErrUnauthorizedClient.WithDescription("the client may not use this grant_type").WithReason("grant_type_not_allowed"))
	}
	scopes, e := cl.scopePolicy(f)
	if e != nil {
		return p.refuse(c, ep, f, e)
	}
	aud, e := cl.audiencePolicy(f, p.issuer)
	if e != nil {
		return p.refuse(c, ep, f, e)
	}
	jkt, e := p.tokenProof(c, cl)
	if e != nil {
		return p.refuse(c, ep, f, e)
	}
	body, e := g.Handle(c.Context(), &grantRequest{form: f, client: cl, scopes: scopes, audience: aud, jkt: jkt})
	if e != nil {
		return p.refuse(c, ep, f, e)
	}
	if p.metrics != nil {
		p.metrics.TokenIssued(p.name, f.grantType)
	}
	return sendJSON(c, body)
}
