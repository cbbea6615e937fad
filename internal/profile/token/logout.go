package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/session"
	"github.com/keygate/keygate/internal/storage/model"
)

// verifyIDTokenHint verifies an ID token this profile issued: a kid of one
// of its published keys, a valid signature and iss equal to the issuer.
// Expiry is not checked (OpenID Connect RP-Initiated Logout 1.0 §2: an
// expired ID token is an acceptable hint).
func (p *Profile) verifyIDTokenHint(token string) (*idClaims, bool) {
	msg, err := jws.Parse([]byte(token))
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, false
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	s := p.verifiers[h.KeyID()]
	if s == nil || h.Algorithm() != s.Alg || strings.HasSuffix(strings.ToLower(h.Type()), typAccessToken) {
		// An access token is no ID token, though signed by the same key.
		return nil, false
	}
	payload, err := jws.Verify([]byte(token), jws.WithKey(s.Alg, s.Public))
	if err != nil {
		return nil, false
	}
	var c idClaims
	if err := json.Unmarshal(payload, &c); err != nil || c.Iss != p.issuer || c.Sub == "" || c.Aud == "" {
		return nil, false
	}
	return &c, true
}

// logoutParams are the parameters of RP-Initiated Logout 1.0 §2 this
// endpoint reads.
var logoutParams = []string{"id_token_hint", "client_id", "post_logout_redirect_uri", "state", "logout_hint", "ui_locales"}

// serveLogout is the end_session_endpoint (OpenID Connect RP-Initiated
// Logout 1.0). The SSO session ends without a question when a valid
// id_token_hint names it (its sid, or its user when the hint has no sid);
// otherwise the user confirms on a page whose form POSTs back here (a
// cross-site POST carries no SameSite=Lax session cookie, so another site
// cannot sign the user out). post_logout_redirect_uri is followed only if
// it is registered, exactly, for the client named by id_token_hint or
// client_id; otherwise a signed-out page is shown. Ending the session
// revokes the refresh tokens issued from it, except offline_access ones
// (storage RefreshTokens.RevokeSession).
func (p *Profile) serveLogout(c *fiber.Ctx) error {
	const ep = config.EndpointLogout
	a, msg := parseAuthzParams(c)
	if a == nil {
		return p.logoutPage(c, ep, msg)
	}
	if a.dup != "" {
		return p.logoutPage(c, ep, "The request repeats the "+sanitizeName(a.dup)+" parameter.")
	}
	var hint *idClaims
	if h := a.get("id_token_hint"); h != "" {
		var ok bool
		if hint, ok = p.verifyIDTokenHint(h); !ok {
			return p.logoutPage(c, ep, "The id_token_hint is not a valid ID token of this server.")
		}
	}
	clientID := a.get("client_id")
	if hint != nil {
		if clientID != "" && clientID != hint.Aud {
			return p.logoutPage(c, ep, "The client_id does not match the id_token_hint.")
		}
		clientID = hint.Aud
	}
	var cl *client
	if clientID != "" {
		if cl = p.clients[clientID]; cl == nil {
			return p.logoutPage(c, ep, "The application (client_id) is not registered.")
		}
	}
	redirect := ""
	if u := a.get("post_logout_redirect_uri"); u != "" {
		if cl != nil && slices.Contains(cl.postLogoutRedirectURIs, u) {
			redirect = u
		} else {
			p.count(c, ep, oauth.ErrInvalidRequest.WithCause(errors.New("post_logout_redirect_uri not registered; not redirecting")))
		}
	}

	ctx := c.Context()
	cookie := c.Cookies(session.CookieName)
	if cookie != "" {
		if p.store == nil {
			return p.logoutPage(c, ep, "The server cannot sign you out right now.")
		}
		sess, err := session.Lookup(ctx, p.store, cookie, p.now())
		ended := "" // the id of the session this logout ends
		switch {
		case errors.Is(err, model.ErrNotFound):
			// Nothing to end; drop the stale cookie below.
		case err != nil:
			p.count(c, ep, oauth.ErrServerError.WithCause(fmt.Errorf("session lookup: %w", err)))
			return p.logoutPage(c, ep, "The server cannot sign you out right now.")
		default:
			named := hint != nil && (hint.SID == sess.ID || hint.SID == "" && hint.Sub == sess.UserID)
			confirmed := c.Method() == http.MethodPost && a.get("confirm") == "yes"
			if !named && !confirmed {
				var h []hidden
				for _, k := range logoutParams {
					if v := a.get(k); v != "" {
						h = append(h, hidden{k, v})
					}
				}
				return sendPage(c, http.StatusOK, "confirm-logout", pageData{Title: "Sign out", Action: p.path + PathLogout, Hidden: h})
			}
			// The session ends, and with it the refresh tokens issued from
			// it, except offline_access grants (OpenID Connect Core 1.0
			// §11). Only the session this cookie proves is ended: a hint
			// alone (an ID token, which relying parties hold and may leak)
			// revokes nothing. Revoked before the session is deleted, so
			// that a failure leaves both in place and the user can retry;
			// the other order would lose the session id and leave the
			// tokens working after a "signed out" page. So a failure fails
			// the logout: the user must not be told they are signed out
			// while the session's refresh tokens still work.
			n, err := p.store.RefreshTokens().RevokeSession(ctx, sess.ID)
			if err != nil {
				// count logs it (slog, level error) with the store's error,
				// which holds no token or cookie.
				p.count(c, ep, oauth.ErrServerError.WithCause(fmt.Errorf("logout of user %s not done, session kept: revoke its refresh tokens: %w", sess.UserID, err)))
				return p.logoutPage(c, ep, "The server cannot sign you out right now.")
			}
			_ = p.trail.Record(ctx, model.AuditEvent{Type: audit.Logout, Subject: sess.UserID, ClientID: clientID,
				Details: map[string]any{"profile": p.name, "sid": sess.ID, "families_revoked": n}})
			ended = sess.ID
		}
		if err := session.Delete(ctx, p.store, cookie); err != nil {
			p.count(c, ep, oauth.ErrServerError.WithCause(err))
			return p.logoutPage(c, ep, "The server cannot sign you out right now.")
		}
		if ended != "" {
			// Again, now that the session is gone: a code of this session
			// exchanged in between stored a family the first pass missed.
			// A code exchanged from now on finds no session and revokes
			// its own family (sessionStillOpen).
			if _, err := p.store.RefreshTokens().RevokeSession(ctx, ended); err != nil {
				p.count(c, ep, oauth.ErrServerError.WithCause(fmt.Errorf("logout: second pass revoking the ended session's refresh tokens: %w", err)))
			}
		}
		session.ClearCookie(c)
	}
	if redirect != "" {
		v := url.Values{}
		if s := a.get("state"); s != "" {
			v.Set("state", s)
		}
		u := redirect
		if len(v) > 0 {
			sep := "?"
			if strings.Contains(redirect, "?") {
				sep = "&"
			}
			u += sep + v.Encode()
		}
		setPageHeaders(c)
		c.Set(fiber.HeaderLocation, u)
		return c.SendStatus(http.StatusFound)
	}
	return sendPage(c, http.StatusOK, "signed-out", pageData{Title: "Signed out"})
}

func (p *Profile) logoutPage(c *fiber.Ctx, endpoint, msg string) error {
	p.count(c, endpoint, oauth.ErrInvalidRequest.WithCause(errors.New(msg)))
	return sendPage(c, http.StatusBadRequest, "error", pageData{Title: "Sign-out request not valid", Message: msg})
}
