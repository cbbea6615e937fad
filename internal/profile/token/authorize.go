package token

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/session"
	"github.com/keygate/keygate/internal/storage/model"
)

// Authorization endpoint error codes (RFC 6749 §4.1.2.1, OpenID Connect
// Core 1.0 §3.1.2.6).
var (
	errUnsupportedResponseType = &oauth.Error{Code: "unsupported_response_type", Status: http.StatusBadRequest}
	errLoginRequired           = &oauth.Error{Code: "login_required", Status: http.StatusBadRequest}
	errRequestNotSupported     = &oauth.Error{Code: "request_not_supported", Status: http.StatusBadRequest}
	errRequestURINotSupported  = &oauth.Error{Code: "request_uri_not_supported", Status: http.StatusBadRequest}
	errConsentRequired         = &oauth.Error{Code: "consent_required", Status: http.StatusBadRequest}
	errAccessDenied            = &oauth.Error{Code: "access_denied", Status: http.StatusForbidden}
)

// consentToken binds a consent form to the session (the cookie value,
// which only the browser and the store's hash of it know; a page of
// another origin cannot compute it) and to what is approved: client,
// redirect URI, scopes and PKCE challenge. No server-side state is needed.
func consentToken(cookie, clientID, redirectURI string, scopes []string, challenge string) string {
	h := sha256.New()
	for _, s := range []string{"keygate-consent-v1", cookie, clientID, redirectURI, strings.Join(scopes, " "), challenge} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// scopeText describes the standard scopes on the consent page.
var scopeText = map[string]string{
	"openid":         "Sign you in (your account identifier)",
	"profile":        "Your name and profile information",
	"email":          "Your email address",
	"address":        "Your postal address",
	"phone":          "Your phone number",
	"offline_access": "Keep access while you are away",
}

// consentPage asks the user to approve the request; the form posts every
// authorization parameter back, with the decision and consent_csrf.
func (p *Profile) consentPage(c *fiber.Ctx, a *authzParams, cl *client, scopes []string, token string, status int) error {
	var h []hidden
	for _, k := range slices.Sorted(maps.Keys(a.values)) {
		if k == "consent" || k == "consent_csrf" {
			continue
		}
		h = append(h, hidden{k, a.values[k][0]})
	}
	h = append(h, hidden{"consent_csrf", token})
	return sendPage(c, status, "consent", pageData{Title: "Allow access?", Action: p.path + PathAuthorize, Hidden: h, Client: cl.id,
		Scopes: describeScopes(scopes)})
}

// paramLoginAfter marks an authorize request sent to the login page because
// it needs a fresh login (prompt=login, max_age): the unix time before
// which an authentication does not count, with its MAC (loginMarker). It
// travels in return_to.
const paramLoginAfter = "kg_login_after"

// loginWindow is how long a kg_login_after marker stays valid: the time a
// user may take on the login page.
const loginWindow = 30 * time.Minute

// maxParamLen bounds state, nonce and code_challenge, which are stored or
// echoed.
const maxParamLen = 1024

// authzParams are the parameters of one authorization request, each given
// at most once.
type authzParams struct {
	values url.Values // every parameter, for return_to
	dup    string     // the first repeated parameter, if any
}

func (a *authzParams) get(k string) string {
	if v := a.values[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (a *authzParams) has(k string) bool { return len(a.values[k]) > 0 }

// parseAuthzParams reads the query (GET) or the form body (POST, OpenID
// Connect Core 1.0 §3.1.2.1).
func parseAuthzParams(c *fiber.Ctx) (*authzParams, string) {
	req := &c.Context().Request
	a := &authzParams{values: url.Values{}}
	visit := func(k, v []byte) {
		key := string(k)
		if _, seen := a.values[key]; seen && a.dup == "" {
			a.dup = key
		}
		a.values[key] = append(a.values[key], string(v))
	}
	if c.Method() == http.MethodPost {
		if len(req.Body()) > MaxFormBytes {
			return nil, "the request is too large"
		}
		ct := req.Header.ContentType()
		if i := bytes.IndexByte(ct, ';'); i >= 0 {
			ct = ct[:i]
		}
		if !bytes.EqualFold(bytes.TrimSpace(ct), []byte("application/x-www-form-urlencoded")) {
			return nil, "the request body must be application/x-www-form-urlencoded"
		}
		req.PostArgs().VisitAll(visit)
	} else {
		req.URI().QueryArgs().VisitAll(visit)
	}
	return a, ""
}

// authzRequest is an authorization request that passed every check that
// needs no user (checkAuthz): what the rest of the flow reads.
type authzRequest struct {
	redirectURI string
	state       string
	scopes      []string
	challenge   string
	nonce       string
	prompt      map[string]bool
	maxAge      int // seconds; -1: none
	// dpopJKT binds the code to a DPoP key (RFC 9449 §10): its exchange
	// needs a proof of that key.
	dpopJKT string
}

// checkRedirect checks the redirect URI of cl's request: given once and
// registered, compared as a string (RFC 9700 §4.1.3): no normalisation,
// no prefix or pattern matching; only a loopback port may vary, on
// opt-in. Its errors are never redirected (RFC 6749 §4.1.2.1); their
// descriptions are fit for the error page.
func checkRedirect(cl *client, a *authzParams) (string, *oauth.Error) {
	if a.dup == "redirect_uri" {
		return "", oauth.ErrInvalidRequest.WithDescription("The request repeats the redirect_uri parameter.").WithReason("parameter_repeated")
	}
	redirectURI := a.get("redirect_uri")
	if redirectURI == "" {
		// OpenID Connect Core 1.0 §3.1.2.1 requires it; so do we for
		// plain OAuth, so the code is always bound to one URI.
		return "", oauth.ErrInvalidRequest.WithDescription("The request has no redirect_uri.").WithReason("redirect_uri_missing")
	}
	if !cl.redirectAllowed(redirectURI) {
		return "", oauth.ErrInvalidRequest.WithDescription("The redirect_uri is not registered for this application.").WithReason("redirect_uri_not_registered")
	}
	return redirectURI, nil
}

// checkAuthz applies the checks of an authorization request that follow
// the redirect URI's, the same at the authorization endpoint (whose
// errors go to the redirect URI) and at the par endpoint (which answers
// them as JSON, RFC 9126 §2.3), so a request refused at one is refused at
// the other.
func checkAuthz(cl *client, redirectURI string, a *authzParams) (*authzRequest, *oauth.Error) {
	r := &authzRequest{redirectURI: redirectURI, state: a.get("state"), maxAge: -1}
	switch {
	case a.dup != "":
		return nil, oauth.ErrInvalidRequest.WithDescription("parameter " + sanitizeName(a.dup) + " is repeated").WithReason("parameter_repeated")
	case len(r.state) > maxParamLen:
		return nil, oauth.ErrInvalidRequest.WithDescription("state is too long").WithReason("parameter_too_long")
	case !cl.grants[config.GrantAuthorizationCode]:
		return nil, oauth.ErrUnauthorizedClient.WithDescription("the client may not use the authorization code grant").WithReason("grant_type_not_allowed")
	case a.has("request"):
		return nil, errRequestNotSupported
	case a.has("request_uri"):
		return nil, errRequestURINotSupported
	}
	switch rt := a.get("response_type"); rt {
	case "code":
	case "":
		return nil, oauth.ErrInvalidRequest.WithDescription("response_type is required").WithReason("response_type_missing")
	default:
		return nil, errUnsupportedResponseType.WithDescription("only response_type=code is supported").WithReason("response_type_unsupported")
	}
	if rm := a.get("response_mode"); rm != "" && rm != "query" {
		return nil, oauth.ErrInvalidRequest.WithDescription("only response_mode=query is supported").WithReason("response_mode_unsupported")
	}
	// PKCE (RFC 7636) with S256, required of every client: RFC 9700 §2.1.1
	// requires it of public clients and recommends it for confidential
	// ones, where it also stops code injection; every current client
	// library supports it, so there is no reason to make it optional.
	method := a.get("code_challenge_method")
	r.challenge = a.get("code_challenge")
	switch {
	case r.challenge == "":
		return nil, oauth.ErrInvalidRequest.WithDescription("code_challenge is required (PKCE with S256)").WithReason("pkce_challenge_missing")
	case method != "S256":
		// An absent method means plain (RFC 7636 §4.3), which is refused.
		return nil, oauth.ErrInvalidRequest.WithDescription("code_challenge_method must be S256").WithReason("pkce_method_unsupported")
	case !validChallenge(r.challenge):
		return nil, oauth.ErrInvalidRequest.WithDescription("code_challenge must be a base64url SHA-256 (43 characters)").WithReason("pkce_challenge_malformed")
	}
	var e *oauth.Error
	if r.scopes, e = cl.scopePolicy(&form{scope: a.get("scope"), hasScope: a.has("scope")}); e != nil {
		return nil, e
	}
	if r.nonce = a.get("nonce"); len(r.nonce) > maxParamLen {
		return nil, oauth.ErrInvalidRequest.WithDescription("nonce is too long").WithReason("parameter_too_long")
	}
	if r.prompt, e = parsePrompt(a.get("prompt")); e != nil {
		return nil, e
	}
	if r.dpopJKT = a.get("dpop_jkt"); r.dpopJKT != "" {
		switch {
		case cl.dpop == config.DPoPOff:
			return nil, oauth.ErrInvalidRequest.WithDescription("DPoP is off for this client: send no dpop_jkt").WithReason("dpop_off")
		case !validChallenge(r.dpopJKT):
			// A SHA-256 thumbprint, base64url: 43 characters (RFC 7638).
			return nil, oauth.ErrInvalidRequest.WithDescription("dpop_jkt must be a base64url SHA-256 JWK thumbprint (43 characters)").WithReason("dpop_jkt_malformed")
		}
	}
	if s := a.get("max_age"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return nil, oauth.ErrInvalidRequest.WithDescription("max_age must be a non-negative integer").WithReason("max_age_invalid")
		}
		r.maxAge = n
	}
	return r, nil
}

// serveAuthorize is the authorization endpoint (RFC 6749 §4.1.1, OpenID
// Connect Core 1.0 §3.1.2). Problems with client_id, redirect_uri or a
// pushed request's request_uri are shown on a page, never redirected
// (RFC 6749 §4.1.2.1); every other error goes back to the registered
// redirect URI with state and iss (RFC 9207).
func (p *Profile) serveAuthorize(c *fiber.Ctx) error {
	const ep = config.EndpointAuthorize
	a, msg := parseAuthzParams(c)
	if a == nil {
		return p.authzPage(c, oauth.ErrInvalidRequest.WithDescription(msg))
	}
	// 1. The client and the redirect URI, or an error page.
	if a.dup == "client_id" {
		return p.authzPage(c, oauth.ErrInvalidRequest.WithDescription("The request repeats the client_id parameter.").WithReason("parameter_repeated"))
	}
	clientID := a.get("client_id")
	if clientID == "" {
		return p.authzPage(c, oauth.ErrInvalidRequest.WithDescription("The request has no client_id."))
	}
	cl := p.clients[clientID]
	if cl == nil {
		return p.authzPage(c, oauth.ErrInvalidRequest.WithDescription("The application (client_id) is not registered."))
	}
	// A pushed request (RFC 9126 §4): its parameters replace the URL's,
	// of which only client_id and request_uri count.
	pushed := false
	if p.served[config.EndpointPAR] && a.has("request_uri") {
		var e *oauth.Error
		if a, e = p.usePushed(c, cl, a); e != nil {
			return p.pushedPage(c, clientID, e)
		}
		pushed = true
	}
	redirectURI, e := checkRedirect(cl, a)
	if e != nil {
		return p.authzPage(c, e)
	}
	state := a.get("state")
	fail := func(e *oauth.Error) error { return p.authzError(c, ep, redirectURI, state, e) }

	// 2. Everything else is answered at the redirect URI.
	if !pushed && (p.parRequired || cl.requirePAR) {
		// RFC 9126 §4: invalid_request for a request not pushed.
		e := oauth.ErrInvalidRequest.WithDescription("pushed authorization request required").WithReason("par_required")
		p.logRefusal(c, ep, clientID, e)
		return fail(e)
	}
	r, e := checkAuthz(cl, redirectURI, a)
	if e != nil {
		return fail(e)
	}
	scopes, challenge, nonce, prompt, maxAge := r.scopes, r.challenge, r.nonce, r.prompt, r.maxAge
	// dpop_jkt needs no user: a browser that edits it only makes a code
	// its client cannot exchange.
	var loginAfter time.Time
	if s := a.get(paramLoginAfter); s != "" {
		loginAfter, _ = p.marker.check(s, a) // a bad marker counts as none: the user signs in
	}
	if p.store == nil {
		return fail(oauth.ErrServerError.WithCause(errNoStore))
	}

	// 3. The SSO session, or a login.
	ctx := c.Context()
	now := p.now()
	sess, err := session.Lookup(ctx, p.store, c.Cookies(session.CookieName), now)
	hasSession := err == nil
	if err != nil && !errors.Is(err, model.ErrNotFound) {
		return fail(oauth.ErrServerError.WithCause(fmt.Errorf("session lookup: %w", err)))
	}
	// A login that happened after this request was sent to the login page
	// satisfies prompt=login and max_age. The marker is signed for this
	// request (loginMarker), and one older than loginWindow (or in the
	// future) is ignored.
	if loginAfter.Before(now.Add(-loginWindow)) || loginAfter.After(now.Add(time.Minute)) {
		loginAfter = time.Time{}
	}
	fresh := hasSession && !loginAfter.IsZero() && !sess.AuthTime.Before(loginAfter)
	needLogin := !hasSession
	if hasSession && !fresh {
		if prompt["login"] {
			needLogin = true
		}
		if maxAge >= 0 && now.Sub(sess.AuthTime) > time.Duration(maxAge)*time.Second {
			needLogin = true
		}
	}
	if needLogin {
		if prompt["none"] {
			return fail(errLoginRequired.WithDescription("the user is not signed in"))
		}
		if pushed {
			return p.toLoginPushed(c, cl, a, now, fail)
		}
		return p.toLogin(c, a, now)
	}

	// 4. Consent, for clients that ask for it.
	if cl.consent {
		want := consentToken(c.Cookies(session.CookieName), cl.id, redirectURI, scopes, challenge)
		decision := a.get("consent")
		page := func(status int) error {
			if pushed {
				return p.consentPagePushed(c, a, cl, scopes, want, status, fail)
			}
			return p.consentPage(c, a, cl, scopes, want, status)
		}
		switch {
		case decision == "" && prompt["none"]:
			return fail(errConsentRequired.WithDescription("the user must approve this application"))
		case decision == "":
			return page(http.StatusOK)
		case c.Method() != http.MethodPost || subtle.ConstantTimeCompare([]byte(a.get("consent_csrf")), []byte(want)) != 1:
			// Not our form, or a form of another session or request.
			return page(http.StatusForbidden)
		case decision == "deny":
			return fail(errAccessDenied.WithDescription("the user denied the request"))
		case decision != "approve":
			return fail(oauth.ErrInvalidRequest.WithDescription("consent must be approve or deny"))
		}
	}

	// 5. The code.
	code := newSecret()
	ac := model.AuthCode{
		Hash: model.HashSecret(code), ClientID: cl.id, RedirectURI: redirectURI, Scopes: scopes,
		Subject: sess.UserID, SessionID: sess.ID, Nonce: nonce,
		CodeChallenge: challenge, CodeChallengeMethod: "S256",
		AuthTime: sess.AuthTime, ACR: sess.ACR, AMR: sess.AMR, Profile: p.name,
		IssuedAt: now, ExpiresAt: now.Add(p.codeLifetime), DPoPJKT: r.dpopJKT,
	}
	if ac.Audience, e = cl.audiencePolicy(&form{}, p.issuer); e != nil {
		return fail(e)
	}
	if cl.grants[config.GrantRefreshToken] {
		ac.RefreshFamilyID = model.NewID()
	}
	ac.AccessTokenJTI = grantJTI(ac.RefreshFamilyID)
	if err := p.store.AuthCodes().Create(ctx, ac); err != nil {
		return fail(oauth.ErrServerError.WithCause(fmt.Errorf("store code: %w", err)))
	}
	return p.authzRedirect(c, redirectURI, url.Values{"code": {code}}, state)
}

// validChallenge: an S256 challenge is the base64url (no padding) of a
// SHA-256, 43 characters (RFC 7636 §4.2).
func validChallenge(s string) bool {
	if len(s) != 43 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// parsePrompt parses the prompt parameter (OpenID Connect Core 1.0
// §3.1.2.1). none may not be combined; consent and select_account are
// accepted and need nothing here (one session per browser; no consent
// screen in this version).
func parsePrompt(s string) (map[string]bool, *oauth.Error) {
	out := map[string]bool{}
	for _, v := range strings.Fields(s) {
		switch v {
		case "none", "login", "consent", "select_account":
			out[v] = true
		default:
			return nil, oauth.ErrInvalidRequest.WithDescription("unsupported prompt value").WithReason("prompt_invalid")
		}
	}
	if out["none"] && len(out) > 1 {
		return nil, oauth.ErrInvalidRequest.WithDescription("prompt=none cannot be combined with other values").WithReason("prompt_invalid")
	}
	return out, nil
}

// toLogin sends the browser to the authentication profile's login page
// with return_to, the relative URL of this authorize request as a GET,
// marked with the time before which a login does not count.
func (p *Profile) toLogin(c *fiber.Ctx, a *authzParams, now time.Time) error {
	v := make(url.Values, len(a.values)+1)
	for k, vals := range a.values {
		v[k] = vals
	}
	v.Set(paramLoginAfter, p.marker.issue(now, a))
	returnTo := p.path + PathAuthorize + "?" + v.Encode()
	setPageHeaders(c)
	c.Set(fiber.HeaderLocation, p.loginURL+"?return_to="+url.QueryEscape(returnTo))
	return c.SendStatus(http.StatusFound)
}

// authzRedirect sends the authorization response to redirectURI (already
// checked against the registered ones): params, then state and iss
// (RFC 9207 §2), appended to any query the registered URI has.
func (p *Profile) authzRedirect(c *fiber.Ctx, redirectURI string, params url.Values, state string) error {
	if state != "" {
		params.Set("state", state)
	}
	params.Set("iss", p.issuer)
	sep := "?"
	if strings.Contains(redirectURI, "?") {
		sep = "&"
	}
	setPageHeaders(c)
	c.Set(fiber.HeaderLocation, redirectURI+sep+params.Encode())
	return c.SendStatus(http.StatusFound)
}

// authzError redirects an error response (RFC 6749 §4.1.2.1).
func (p *Profile) authzError(c *fiber.Ctx, endpoint, redirectURI, state string, e *oauth.Error) error {
	p.count(c, endpoint, e)
	v := url.Values{"error": {e.Code}}
	if e.Description != "" {
		v.Set("error_description", e.Description)
	}
	return p.authzRedirect(c, redirectURI, v, state)
}

// authzPage shows an error that must not be redirected; e's description
// is the page's message.
func (p *Profile) authzPage(c *fiber.Ctx, e *oauth.Error) error {
	if e.Cause == nil {
		e = e.WithCause(errors.New(e.Description))
	}
	p.count(c, config.EndpointAuthorize, e)
	return sendPage(c, http.StatusBadRequest, "error", pageData{Title: "Sign-in request not valid", Message: e.Description})
}

// count records an OAuth error in metrics and logs, without writing it.
func (p *Profile) count(c *fiber.Ctx, endpoint string, e *oauth.Error) {
	if p.metrics != nil {
		p.metrics.OAuthError(p.name, endpoint, e.Code, reasonOf(e))
	}
	level := slog.LevelDebug
	if e.Status >= 500 {
		level = slog.LevelError
	}
	attrs := []any{"profile", p.name, "endpoint", endpoint, "error", e.Code}
	if e.Cause != nil {
		attrs = append(attrs, "cause", e.Cause.Error())
	}
	p.log.Log(c.Context(), level, "oauth error", attrs...)
}
