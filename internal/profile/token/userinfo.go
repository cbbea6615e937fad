package token

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/storage/model"
)

// scopeClaims are the user claims each scope releases at userinfo
// (OpenID Connect Core 1.0 §5.4).
var scopeClaims = map[string][]string{
	"profile": {"name", "family_name", "given_name", "middle_name", "nickname", "preferred_username",
		"profile", "picture", "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at"},
	"email":   {"email", "email_verified"},
	"address": {"address"},
	"phone":   {"phone_number", "phone_number_verified"},
}

// userinfoClaims lists every claim userinfo can return, for discovery.
func userinfoClaims() []string {
	var out []string
	for _, s := range []string{"profile", "email", "address", "phone"} {
		out = append(out, scopeClaims[s]...)
	}
	return out
}

// Bearer token errors (RFC 6750 §3.1).
var (
	errInvalidToken      = &oauth.Error{Code: "invalid_token", Status: http.StatusUnauthorized, Description: "the access token is invalid, expired or revoked"}
	errInsufficientScope = &oauth.Error{Code: "insufficient_scope", Status: http.StatusForbidden, Description: "the access token lacks the openid scope"}
)

// serveUserinfo is the UserInfo endpoint (OpenID Connect Core 1.0 §5.3)
// guarded by a bearer token (RFC 6750): the Authorization header, or the
// access_token form parameter of a POST (§2.2); never both, never the
// query (§2.3 is not supported: URLs end up in logs).
func (p *Profile) serveUserinfo(c *fiber.Ctx) error {
	const ep = config.EndpointUserinfo
	tok, scheme, e := bearerToken(c)
	if e != nil {
		return p.bearerFail(c, ep, e)
	}
	if tok == "" {
		// §3.1: no error code when the request carried no credentials.
		return p.bearerFail(c, ep, &oauth.Error{Status: http.StatusUnauthorized})
	}
	if p.store == nil {
		return p.bearerFail(c, ep, oauth.ErrServerError.WithCause(errNoStore))
	}
	ctx := c.Context()
	info, ok, err := p.lookup(ctx, tok)
	if err != nil {
		return p.bearerFail(c, ep, oauth.ErrServerError.WithCause(err))
	}
	if !ok || !p.now().Before(info.expires) {
		return p.bearerFail(c, ep, errInvalidToken)
	}
	if !p.forUserinfo(info.audience) {
		return p.bearerFail(c, ep, errInvalidToken.WithCause(errors.New("token audience is not userinfo's")))
	}
	if e := p.resourceProof(c, info, tok, scheme, p.htuUserinfo); e != nil {
		return p.dpopFail(c, ep, e)
	}
	switch revoked, err := p.families.revoked(ctx, info); {
	case err != nil:
		return p.bearerFail(c, ep, oauth.ErrServerError.WithCause(err))
	case revoked:
		return p.bearerFail(c, ep, errInvalidToken)
	}
	scopes := strings.Fields(info.scope)
	if !slices.Contains(scopes, "openid") {
		return p.bearerFail(c, ep, errInsufficientScope)
	}
	u, err := p.store.Users().Get(ctx, info.subject)
	switch {
	case errors.Is(err, model.ErrNotFound):
		return p.bearerFail(c, ep, errInvalidToken.WithCause(errors.New("user gone")))
	case err != nil:
		return p.bearerFail(c, ep, oauth.ErrServerError.WithCause(fmt.Errorf("get user: %w", err)))
	case u.Status != "" && u.Status != model.UserActive:
		return p.bearerFail(c, ep, errInvalidToken.WithCause(errors.New("user not active")))
	}
	body, err := json.Marshal(userClaims(u, scopes))
	if err != nil {
		return p.bearerFail(c, ep, oauth.ErrServerError.WithCause(err))
	}
	return sendJSON(c, body)
}

// forUserinfo reports whether a token of audience aud is meant for
// userinfo (RFC 9068 §4): aud names the issuer, whose endpoint it is, or
// one of the profile's userinfo-audiences.
func (p *Profile) forUserinfo(aud []string) bool {
	return slices.ContainsFunc(aud, func(a string) bool {
		return a == p.issuer || slices.Contains(p.userinfoAudiences, a)
	})
}

// userClaims returns sub plus the claims the scopes release.
func userClaims(u model.User, scopes []string) map[string]any {
	out := map[string]any{"sub": u.ID}
	for _, s := range scopes {
		for _, name := range scopeClaims[s] {
			if v, ok := u.Claims[name]; ok {
				out[name] = v
			}
		}
		if s == "profile" {
			if _, ok := out["preferred_username"]; !ok && u.Username != "" {
				out["preferred_username"] = u.Username
			}
			if !u.UpdatedAt.IsZero() {
				out["updated_at"] = u.UpdatedAt.Unix()
			}
		}
	}
	return out
}

// Authorization schemes of an access token: RFC 6750 §2.1 (or the form
// body, §2.2) and RFC 9449 §7.1.
const (
	schemeBearer = "Bearer"
	schemeDPoP   = tokenTypeDPoP
)

// bearerToken extracts the token of RFC 6750 §2.1 or §2.2, or of a DPoP
// Authorization header (RFC 9449 §7.1), with the scheme it came with.
func bearerToken(c *fiber.Ctx) (string, string, *oauth.Error) {
	req := &c.Context().Request
	var header, body string
	var hasBody bool
	scheme := schemeBearer
	if h := req.Header.Peek(fasthttp.HeaderAuthorization); len(h) > 0 {
		switch {
		case len(h) >= 7 && strings.EqualFold(string(h[:7]), "bearer "):
			header = strings.TrimSpace(string(h[7:]))
		case len(h) >= 5 && strings.EqualFold(string(h[:5]), "dpop "):
			header, scheme = strings.TrimSpace(string(h[5:])), schemeDPoP
		default:
			return "", "", errInvalidToken.WithDescription("the Authorization scheme must be Bearer or DPoP")
		}
		if header == "" {
			return "", "", oauth.ErrInvalidRequest.WithDescription("empty access token")
		}
	}
	if c.Method() == http.MethodPost {
		if len(req.Body()) > MaxFormBytes {
			return "", "", errTooLarge
		}
		ct := req.Header.ContentType()
		if i := bytes.IndexByte(ct, ';'); i >= 0 {
			ct = ct[:i]
		}
		if bytes.EqualFold(bytes.TrimSpace(ct), []byte("application/x-www-form-urlencoded")) {
			n := 0
			req.PostArgs().VisitAll(func(k, v []byte) {
				if string(k) == "access_token" {
					n++
					body, hasBody = string(v), true
				}
			})
			if n > 1 {
				return "", "", oauth.ErrInvalidRequest.WithDescription("access_token is repeated")
			}
		}
	}
	if len(req.URI().QueryArgs().Peek("access_token")) > 0 {
		return "", "", oauth.ErrInvalidRequest.WithDescription("send the access token in the Authorization header, not the URL")
	}
	switch {
	case header != "" && hasBody:
		return "", "", oauth.ErrInvalidRequest.WithDescription("use exactly one way to send the access token")
	case header != "":
		return header, scheme, nil
	}
	return body, schemeBearer, nil
}

// bearerFail writes a bearer-token error: the JSON body plus the
// WWW-Authenticate challenge of RFC 6750 §3 on 401 and 403.
func (p *Profile) bearerFail(c *fiber.Ctx, endpoint string, e *oauth.Error) error {
	r := &c.Context().Response
	if e.Code == "" {
		// No credentials: a bare challenge, no body (RFC 6750 §3.1).
		r.SetStatusCode(http.StatusUnauthorized)
		oauth.NoStore(r)
		r.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="`+oauth.Realm(p.issuer)+`"`)
		// Either scheme will do (RFC 9449 §7.1).
		r.Header.Add(fasthttp.HeaderWWWAuthenticate, p.dpop.challenge(""))
		return nil
	}
	_ = p.fail(c, endpoint, e) // writes the body; overwrite its Basic challenge
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusBadRequest:
		ch := `Bearer realm="` + oauth.Realm(p.issuer) + `", error="` + e.Code + `"`
		if e.Code == errInsufficientScope.Code {
			ch += `, scope="openid"`
		}
		r.Header.Set(fasthttp.HeaderWWWAuthenticate, ch)
	}
	return nil
}

// resourceProof applies RFC 9449 §7 to an access token presented at a
// resource of this profile: a token bound to a key (cnf.jkt) only with
// the DPoP scheme and a valid proof of that key whose ath is the token's
// hash; a bearer token only with the Bearer scheme. An unbound token sent
// with Bearer costs nothing here.
func (p *Profile) resourceProof(c *fiber.Ctx, info tokenInfo, tok, scheme, htu string) *oauth.Error {
	if scheme == schemeBearer {
		if info.jkt != "" {
			return errInvalidToken.WithDescription("the access token is bound to a DPoP key: send it with the DPoP scheme and a proof").
				WithReason("dpop_bound_token_as_bearer")
		}
		return nil
	}
	if info.jkt == "" {
		return errInvalidToken.WithDescription("the access token is not DPoP-bound: send it with the Bearer scheme").WithReason("dpop_unbound_token")
	}
	raw, e := proofHeader(c)
	switch {
	case e != nil:
		return p.withNonce(c, e)
	case raw == "":
		return p.withNonce(c, errInvalidDPoPProof.WithDescription("a DPoP-bound token needs a DPoP proof").WithReason("dpop_proof_missing"))
	}
	proof, e := p.dpop.check(c.Context(), raw, c.Method(), htu, tok)
	p.withNonce(c, nil)
	if e != nil {
		return e
	}
	if subtle.ConstantTimeCompare([]byte(proof.jkt), []byte(info.jkt)) != 1 {
		return errInvalidDPoPProof.WithDescription("the DPoP proof's key is not the one the access token is bound to").WithReason("dpop_key_mismatch")
	}
	return nil
}

// dpopFail writes a refusal of resourceProof: 401 with a DPoP challenge
// (RFC 9449 §7.1) for the DPoP errors and for a bound token sent as a
// bearer token, whose client must learn to use DPoP.
func (p *Profile) dpopFail(c *fiber.Ctx, endpoint string, e *oauth.Error) error {
	if e.Status >= 500 {
		return p.bearerFail(c, endpoint, e)
	}
	if e.Status == http.StatusBadRequest {
		e = e.WithDescription(e.Description) // a copy: the sentinels are shared
		e.Status = http.StatusUnauthorized
	}
	_ = p.fail(c, endpoint, e) // writes the body; overwrite its Basic challenge
	c.Context().Response.Header.Set(fasthttp.HeaderWWWAuthenticate, p.dpop.challenge(e.Code))
	return nil
}
