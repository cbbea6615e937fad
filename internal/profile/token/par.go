package token

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/storage/model"
)

// Pushed authorization requests (RFC 9126). A client posts the parameters
// of an authorization request to the par endpoint, authenticated as at
// the token endpoint; they are checked as /authorize checks them and
// stored in the zone's database under the hash of a random request_uri,
// which the client then sends the browser to /authorize with. The first
// use deletes the stored request (one DELETE ... RETURNING, so one use
// wins across every node); an unknown, used or expired request_uri gets
// an error page, never a redirect, since no redirect URI is known.
//
// The parameters never reach the browser: when the user must sign in or
// approve, the request goes on under a new request_uri of the same kind
// (a continuation), which lives for the login window, since a user takes
// longer than a client's redirect.

// requestURIPrefix is the form of RFC 9126 §2.2 for a request_uri; the
// rest is 256 random bits (newSecret).
const requestURIPrefix = "urn:ietf:params:oauth:request_uri:"

// maxRequestURILen bounds what is hashed and looked up: the prefix and 43
// base64url characters, with room to spare.
const maxRequestURILen = 128

// authParams authenticate the client at the par endpoint; they are not
// part of the authorization request and never stored (RFC 9126 §2.1).
var authParams = []string{"client_secret", "client_assertion", "client_assertion_type"}

// consentParams are what the consent form posts besides the request:
// the user's decision and the form's token. Never a client's: dropped
// from a pushed request (a client cannot push the user's consent), and
// taken from the browser's request when a pushed request is used.
var consentParams = []string{"consent", "consent_csrf"}

// parResponse is the success response of RFC 9126 §2.2.
type parResponse struct {
	RequestURI string `json:"request_uri"`
	ExpiresIn  int64  `json:"expires_in"`
}

// servePAR is the pushed authorization request endpoint (RFC 9126 §2):
// parse the form, authenticate the client as the token endpoint does,
// check the request as /authorize would (checkRedirect, checkAuthz),
// store it and answer 201 with its request_uri.
func (p *Profile) servePAR(c *fiber.Ctx) error {
	const ep = config.EndpointPAR
	f, a, e := parsePushed(c)
	if e != nil {
		return p.refuse(c, ep, f, e)
	}
	cl, e := p.authenticate(c.Context(), f, true)
	if e != nil {
		return p.refuse(c, ep, f, e)
	}
	switch id := a.get("client_id"); {
	case a.has("request_uri"):
		return p.refuse(c, ep, f, oauth.ErrInvalidRequest.WithDescription("request_uri must not be pushed (RFC 9126 §2.1)").WithReason("request_uri_pushed"))
	case id == "":
		// A required authorization request parameter, so required here
		// too (RFC 9126 §2.1), whichever way the client authenticated.
		return p.refuse(c, ep, f, oauth.ErrInvalidRequest.WithDescription("client_id is required").WithReason("client_id_missing"))
	case id != cl.id:
		// The authenticator already identifies the client by client_id
		// when one is sent; this keeps a change there from storing a
		// request under another client than it names.
		return p.refuse(c, ep, f, oauth.ErrInvalidRequest.WithDescription("client_id is not the authenticated client").WithReason("client_id_mismatch"))
	}
	redirectURI, e := checkRedirect(cl, a)
	if e != nil {
		return p.refuse(c, ep, f, e)
	}
	if _, e := checkAuthz(cl, redirectURI, a); e != nil {
		return p.refuse(c, ep, f, e)
	}
	if e := p.pushedProof(c, cl, a); e != nil {
		return p.refuse(c, ep, f, e)
	}
	for _, k := range consentParams {
		delete(a.values, k)
	}
	// The login marker is this server's too; a continuation holds its own.
	delete(a.values, paramLoginAfter)
	requestURI, err := p.storePushed(c, cl.id, a.values, p.parLifetime)
	if err != nil {
		return p.refuse(c, ep, f, oauth.ErrServerError.WithCause(err))
	}
	body, _ := json.Marshal(parResponse{RequestURI: requestURI, ExpiresIn: int64(p.parLifetime / time.Second)}) // cannot fail
	r := &c.Context().Response
	r.SetStatusCode(http.StatusCreated)
	r.Header.SetContentType(contentTypeJSON)
	oauth.NoStore(r)
	r.SetBodyRaw(body)
	return nil
}

// pushedProof applies RFC 9449 §10.1: a DPoP proof sent with a pushed
// request binds the code to its key, as dpop_jkt would; with both, they
// must name the same key. The client's dpop mode applies as at the token
// endpoint, except that a required client may push without a proof (it
// proves its key when it exchanges the code).
func (p *Profile) pushedProof(c *fiber.Ctx, cl *client, a *authzParams) *oauth.Error {
	raw, e := proofHeader(c)
	switch {
	case e != nil:
		return p.withNonce(c, e)
	case raw == "":
		return nil
	case cl.dpop == config.DPoPOff:
		return oauth.ErrInvalidRequest.WithDescription("DPoP is off for this client: send no DPoP header").WithReason("dpop_off")
	}
	proof, e := p.dpop.check(c.Context(), raw, http.MethodPost, p.htuPAR, "")
	p.withNonce(c, nil)
	if e != nil {
		return e
	}
	switch jkt := a.get("dpop_jkt"); {
	case jkt == "":
		a.values.Set("dpop_jkt", proof.jkt)
	case subtle.ConstantTimeCompare([]byte(jkt), []byte(proof.jkt)) != 1:
		return errInvalidDPoPProof.WithDescription("dpop_jkt is not the thumbprint of the DPoP proof's key").WithReason("dpop_key_mismatch")
	}
	return nil
}

// parsePushed reads a pushed request: an authorization request in a POST
// form (RFC 9126 §2.1), each parameter once, with the client's
// credentials, which are taken out of it. A repeated parameter is refused
// before the client is authenticated, as at the token endpoint.
func parsePushed(c *fiber.Ctx) (*form, *authzParams, *oauth.Error) {
	req := &c.Context().Request
	if e := checkFormRequest(req); e != nil {
		return nil, nil, e
	}
	a := &authzParams{values: url.Values{}}
	req.PostArgs().VisitAll(func(k, v []byte) {
		key := string(k)
		if _, seen := a.values[key]; seen && a.dup == "" {
			a.dup = key
		}
		a.values[key] = append(a.values[key], string(v))
	})
	f := &form{}
	if auth := req.Header.Peek(fasthttp.HeaderAuthorization); len(auth) > 0 {
		f.creds.Authorization = string(auth)
	}
	f.creds.ClientID = a.get("client_id")
	f.creds.ClientSecret, f.creds.HasClientSecret = a.get("client_secret"), a.has("client_secret")
	f.creds.ClientAssertion, f.creds.HasAssertion = a.get("client_assertion"), a.has("client_assertion")
	f.creds.ClientAssertionType = a.get("client_assertion_type")
	if a.dup != "" {
		return f, nil, oauth.ErrInvalidRequest.WithDescription("parameter " + sanitizeName(a.dup) + " is repeated").WithReason("parameter_repeated")
	}
	for _, k := range authParams {
		delete(a.values, k)
	}
	return f, a, nil
}

// storePushed stores an authorization request of clientID for lifetime
// and returns its new request_uri. The request_uri is a bearer
// reference: only its hash is stored, and it is never logged.
func (p *Profile) storePushed(c *fiber.Ctx, clientID string, params url.Values, lifetime time.Duration) (string, error) {
	if p.store == nil {
		return "", errNoStore
	}
	requestURI := requestURIPrefix + newSecret()
	now := p.now()
	err := p.store.PushedRequests().Create(c.Context(), model.PushedRequest{
		Hash: model.HashSecret(requestURI), ClientID: clientID, Profile: p.name, Params: params,
		IssuedAt: now, ExpiresAt: now.Add(lifetime),
	})
	if err != nil {
		return "", fmt.Errorf("store pushed request: %w", err)
	}
	return requestURI, nil
}

// Refusals of a request_uri at the authorization endpoint: invalid_request
// (RFC 9126 has no code of its own), shown on a page.
var (
	errRequestURIUnknown = oauth.ErrInvalidRequest.WithDescription(
		"The request_uri is not valid: it is unknown or was already used. Start the sign-in again from the application.").WithReason("request_uri_unknown")
	errRequestURIExpired = oauth.ErrInvalidRequest.WithDescription(
		"The request_uri has expired. Start the sign-in again from the application.").WithReason("request_uri_expired")
	errRequestURIOtherClient = oauth.ErrInvalidRequest.WithDescription(
		"The request_uri was not issued to this application (client_id).").WithReason("request_uri_other_client")
)

// usePushed consumes the pushed request that a's request_uri names and
// returns its parameters in place of the URL's (RFC 9126 §4: only
// client_id and request_uri of the URL count), with the browser's own
// interaction parameters (consent) taken from a. The request is used up
// whatever follows, an error included: a request_uri is single use.
func (p *Profile) usePushed(c *fiber.Ctx, cl *client, a *authzParams) (*authzParams, *oauth.Error) {
	if a.dup == "request_uri" {
		return nil, oauth.ErrInvalidRequest.WithDescription("The request repeats the request_uri parameter.").WithReason("parameter_repeated")
	}
	requestURI := a.get("request_uri")
	if !strings.HasPrefix(requestURI, requestURIPrefix) || len(requestURI) > maxRequestURILen {
		return nil, errRequestURIUnknown.WithCause(errors.New("not a request_uri of this server"))
	}
	if p.store == nil {
		return nil, oauth.ErrServerError.WithCause(errNoStore)
	}
	pr, err := p.store.PushedRequests().Consume(c.Context(), model.HashSecret(requestURI))
	switch {
	case errors.Is(err, model.ErrNotFound):
		return nil, errRequestURIUnknown.WithCause(errors.New("request_uri unknown or already used"))
	case err != nil:
		return nil, oauth.ErrServerError.WithCause(fmt.Errorf("use pushed request: %w", err))
	case pr.Profile != p.name:
		// Another token profile on the same database pushed it.
		return nil, errRequestURIUnknown.WithCause(fmt.Errorf("request_uri of profile %q", pr.Profile))
	case pr.ClientID != cl.id:
		return nil, errRequestURIOtherClient.WithCause(fmt.Errorf("request_uri of client %q", pr.ClientID))
	case !p.now().Before(pr.ExpiresAt):
		return nil, errRequestURIExpired.WithCause(fmt.Errorf("request_uri expired at %s", pr.ExpiresAt.Format(time.RFC3339)))
	}
	out := &authzParams{values: pr.Params}
	if out.values == nil {
		out.values = url.Values{}
	}
	// The login marker is not among them: a continuation stores its own.
	for _, k := range consentParams {
		delete(out.values, k)
		if v, ok := a.values[k]; ok {
			out.values[k] = v
			if len(v) > 1 && out.dup == "" {
				out.dup = k
			}
		}
	}
	return out, nil
}

// pushedPage shows a refused request_uri (or a failure of ours while
// using one) on a page: no redirect URI is known (RFC 6749 §4.1.2.1).
// The refusal is logged at info, as the token endpoint's are.
func (p *Profile) pushedPage(c *fiber.Ctx, clientID string, e *oauth.Error) error {
	e = oauth.Retryable(e)
	if e.Status < 500 {
		p.logRefusal(c, config.EndpointAuthorize, clientID, e)
		return p.authzPage(c, e)
	}
	p.count(c, config.EndpointAuthorize, e)
	if e.Status == http.StatusServiceUnavailable {
		c.Set(fiber.HeaderRetryAfter, oauth.RetryAfter)
	}
	return sendPage(c, e.Status, "error", pageData{Title: "Sign-in not available",
		Message: "The sign-in service cannot take this request right now. Try again in a moment."})
}

// continuePushed stores what a pushed request goes on with while the
// user signs in or decides (a's parameters without the browser's
// interaction), for the login window, and returns the authorize URL
// query that resumes it.
func (p *Profile) continuePushed(c *fiber.Ctx, cl *client, a *authzParams, extra url.Values) (string, error) {
	v := make(url.Values, len(a.values)+len(extra))
	maps.Copy(v, a.values)
	for _, k := range consentParams {
		delete(v, k)
	}
	maps.Copy(v, extra)
	requestURI, err := p.storePushed(c, cl.id, v, loginWindow)
	if err != nil {
		return "", err
	}
	return url.Values{"client_id": {cl.id}, "request_uri": {requestURI}}.Encode(), nil
}

// toLoginPushed is toLogin for a pushed request: return_to resumes it by
// a continuation, which holds the kg_login_after marker.
func (p *Profile) toLoginPushed(c *fiber.Ctx, cl *client, a *authzParams, now time.Time, fail func(*oauth.Error) error) error {
	q, err := p.continuePushed(c, cl, a, url.Values{paramLoginAfter: {p.marker.issue(now, a)}})
	if err != nil {
		return fail(oauth.ErrServerError.WithCause(err))
	}
	setPageHeaders(c)
	c.Set(fiber.HeaderLocation, p.loginURL+"?return_to="+url.QueryEscape(p.path+PathAuthorize+"?"+q))
	return c.SendStatus(http.StatusFound)
}

// consentPagePushed is consentPage for a pushed request: the form posts
// back client_id and a continuation's request_uri, not the parameters.
func (p *Profile) consentPagePushed(c *fiber.Ctx, a *authzParams, cl *client, scopes []string, token string, status int, fail func(*oauth.Error) error) error {
	q, err := p.continuePushed(c, cl, a, nil)
	if err != nil {
		return fail(oauth.ErrServerError.WithCause(err))
	}
	cont, _ := url.ParseQuery(q) // just encoded
	return p.consentPage(c, &authzParams{values: cont}, cl, scopes, token, status)
}
