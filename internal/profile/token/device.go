package token

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/session"
	"github.com/keygate/keygate/internal/storage/model"
)

// The device authorization grant (RFC 8628): a device without a browser
// or keyboard (a TV, a CLI on a server) asks the device authorization
// endpoint for a device_code and a short user code, shows the user the
// code and the verification page, and polls the token endpoint with the
// device_code while the user signs in on another screen, enters the code
// and approves. Both codes live in the zone's database, so any node
// answers any step; the decision and the single use of the device_code
// are conditional writes there (model.DeviceCodes).

// Device flow error codes (RFC 8628 §3.5).
var (
	errAuthorizationPending = &oauth.Error{Code: "authorization_pending", Status: http.StatusBadRequest,
		Description: "the user has not yet approved the device"}
	errSlowDown = &oauth.Error{Code: "slow_down", Status: http.StatusBadRequest,
		Description: "polling too fast: wait the interval, now 5 seconds longer"}
	errExpiredToken = &oauth.Error{Code: "expired_token", Status: http.StatusBadRequest,
		Description: "the device_code has expired: start again"}
	errBadDeviceCode = oauth.ErrInvalidGrant.WithDescription("the device_code is invalid, already used, or was issued to another client")
	errDeviceDenied  = &oauth.Error{Code: "access_denied", Status: http.StatusBadRequest,
		Description: "the user denied the device"}
)

// userCodeAlphabet is RFC 8628 §6.1's: consonants only, so no word is
// spelled by chance and no 0/O or 1/I is misread. 8 of its 20 characters
// are ≈ 34.6 bits, beyond guessing in a few minutes with the per-user
// limit below.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

const userCodeLen = 8

// Guessing (RFC 8628 §5.1): a signed-in user may enter a code this many
// times within userCodeWindow, right or wrong, then is turned away until
// the window has passed. Every entry is an audit event in the zone's
// database, written before the code is looked up and counted with it, so
// the limit holds across nodes and for entries sent at once; an entry
// that cannot be written is refused.
const (
	maxUserCodeEntries = 10
	userCodeWindow     = 15 * time.Minute
	auditUserCodeEntry = "device_user_code_entered"
	auditDeviceDecide  = "device_authorization"
)

// pollSlack is how much sooner than the interval a poll may come without
// slow_down: the last poll's time was written by whichever node answered
// it, whose clock and the network add a little to a device's own timing.
func pollSlack(interval time.Duration) time.Duration { return min(time.Second, interval/5) }

// newUserCode is a random user code, userCodeLen characters of
// userCodeAlphabet, without modulo bias (20 divides 240).
func newUserCode() string {
	b := make([]byte, userCodeLen)
	out := make([]byte, 0, userCodeLen)
	for len(out) < userCodeLen {
		_, _ = rand.Read(b) // never fails (Go 1.24+)
		for _, x := range b {
			if x < 240 && len(out) < userCodeLen {
				out = append(out, userCodeAlphabet[int(x)%len(userCodeAlphabet)])
			}
		}
	}
	return string(out)
}

// displayUserCode shows a code in two groups of four (WDJB-MJHT), easier
// to read and type.
func displayUserCode(code string) string { return code[:4] + "-" + code[4:] }

// normalizeUserCode is what a user typed, as stored: upper case, without
// the dash or spaces people add; "" if it cannot be a code.
func normalizeUserCode(s string) string {
	if len(s) > 32 {
		return ""
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case r == '-' || r == ' ':
		case strings.ContainsRune(userCodeAlphabet, r):
			b.WriteRune(r)
		default:
			return ""
		}
	}
	if b.Len() != userCodeLen {
		return ""
	}
	return b.String()
}

// deviceResponse is RFC 8628 §3.2.
type deviceResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// serveDeviceAuthorization is the device authorization endpoint (RFC 8628
// §3.1, §3.2): the client authenticates as at the token endpoint (a public
// client by its client_id), its scope and audience are checked as there,
// and the request is stored pending under the hashes of both codes.
func (p *Profile) serveDeviceAuthorization(c *fiber.Ctx) error {
	const ep = config.EndpointDeviceAuthorization
	f, e := parseForm(c)
	if e != nil {
		return p.fail(c, ep, e)
	}
	cl, e := p.authenticate(c.Context(), f, true)
	if e != nil {
		return p.refuse(c, ep, f, e)
	}
	if !cl.grants[config.GrantDeviceCode] {
		return p.refuse(c, ep, f, oauth.ErrUnauthorizedClient.WithDescription("the client may not use the device authorization grant").WithReason("grant_type_not_allowed"))
	}
	scopes, e := cl.scopePolicy(f)
	if e != nil {
		return p.refuse(c, ep, f, e)
	}
	aud, e := cl.audiencePolicy(f, p.issuer)
	if e != nil {
		return p.refuse(c, ep, f, e)
	}
	if p.store == nil {
		return p.fail(c, ep, oauth.ErrServerError.WithCause(errNoStore))
	}
	now := p.now()
	deviceCode := newSecret()
	rec := model.DeviceCode{Hash: model.HashSecret(deviceCode), ClientID: cl.id, Profile: p.name, Scopes: scopes,
		Audience: aud, Status: model.DevicePending, Interval: p.deviceInterval, IssuedAt: now, ExpiresAt: now.Add(p.deviceLifetime)}
	// A user code drawn twice among the pending ones is a conflict: draw
	// again (at 2^34 codes a second conflict in a row means a fault).
	var userCode string
	var err error
	for range 3 {
		userCode = newUserCode()
		rec.UserCode = model.HashSecret(userCode)
		if err = p.store.DeviceCodes().Create(c.Context(), rec); !errors.Is(err, model.ErrConflict) {
			break
		}
	}
	if err != nil {
		return p.fail(c, ep, oauth.ErrServerError.WithCause(fmt.Errorf("store device code: %w", err)))
	}
	verify := strings.TrimSuffix(p.issuer, "/") + PathDevice
	body, _ := json.Marshal(deviceResponse{ // strings and numbers: cannot fail
		DeviceCode: deviceCode, UserCode: displayUserCode(userCode), VerificationURI: verify,
		VerificationURIComplete: verify + "?user_code=" + url.QueryEscape(displayUserCode(userCode)),
		ExpiresIn:               int64(p.deviceLifetime / time.Second), Interval: int64(p.deviceInterval / time.Second),
	})
	return sendJSON(c, body)
}

// deviceCode is the device_code grant (RFC 8628 §3.4, §3.5).
type deviceCode struct{ *userGrants }

var _ Grant = (*deviceCode)(nil)

// Handle answers a poll: authorization_pending until the user decides,
// slow_down for a poll sooner than the interval (which then grows by 5 s
// for good, §3.5), expired_token after the lifetime, access_denied once
// if the user denied, and the tokens once if the user approved.
func (g *deviceCode) Handle(ctx context.Context, r *grantRequest) ([]byte, *oauth.Error) {
	f, cl := r.form, r.client
	if f.deviceCode == "" {
		return nil, oauth.ErrInvalidRequest.WithDescription("device_code is required").WithReason("device_code_missing")
	}
	rec, hash, e := lookup[model.DeviceCode](ctx, g.store, model.Store.DeviceCodes, f.deviceCode, errBadDeviceCode, "device_code_unknown", "device code")
	if e != nil {
		return nil, e
	}
	if rec.ClientID != cl.id || rec.Profile != g.profile {
		return nil, errBadDeviceCode.WithReason("device_code_other_client")
	}
	now := g.now()
	if !now.Before(rec.ExpiresAt) {
		return nil, errExpiredToken.WithReason("device_code_expired")
	}
	interval := rec.Interval
	early := !rec.LastPolledAt.IsZero() && now.Sub(rec.LastPolledAt) < rec.Interval-pollSlack(rec.Interval)
	if early {
		interval += 5 * time.Second
	}
	recorded, err := g.store.DeviceCodes().Poll(ctx, hash, rec.Polls, now, interval)
	switch {
	case err != nil:
		return nil, oauth.ErrServerError.WithCause(err)
	case early || !recorded:
		// !recorded: another poll of this device was recorded since we
		// read it, on this node or another.
		return nil, errSlowDown.WithReason("device_slow_down")
	case rec.Status == model.DevicePending:
		return nil, errAuthorizationPending.WithReason("device_pending")
	}
	rec, err = g.store.DeviceCodes().Consume(ctx, hash)
	switch {
	case errors.Is(err, model.ErrNotFound):
		return nil, errBadDeviceCode.WithReason("device_code_used")
	case err != nil:
		return nil, oauth.ErrServerError.WithCause(fmt.Errorf("consume device code: %w", err))
	case rec.Status == model.DeviceDenied:
		return nil, errDeviceDenied.WithReason("device_denied")
	}
	if e := g.activeUser(ctx, rec.Subject); e != nil {
		return nil, e
	}
	family := ""
	if cl.grants[config.GrantRefreshToken] {
		family = model.NewID()
	}
	body, e := g.issue.issueUser(ctx, userTokens{client: cl, subject: rec.Subject, scopes: rec.Scopes, audience: rec.Audience,
		sid: rec.SessionID, authTime: rec.AuthTime, acr: rec.ACR, amr: rec.AMR, jti: grantJTI(family), family: family, jkt: r.jkt})
	if e != nil {
		return nil, e
	}
	// The user may have signed out between approving and this poll.
	if e := g.sessionStillOpen(ctx, rec.SessionID, family); e != nil {
		return nil, e
	}
	return body, nil
}

// deviceCSRF binds the verification page's forms to the SSO session (the
// cookie, which a page of another origin cannot read), as consentToken
// does for consent.
func deviceCSRF(cookie, userCode string) string {
	sum := sha256.Sum256([]byte("keygate-device-v1\x00" + cookie + "\x00" + userCode))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// serveDevicePage is the verification page (RFC 8628 §3.3): the user
// signs in (the login page returns here), enters the code (or finds it
// filled in from verification_uri_complete), sees which application asks
// for what, and approves or denies. Every step needs the session.
func (p *Profile) serveDevicePage(c *fiber.Ctx) error {
	const ep = config.EndpointDeviceAuthorization
	if p.store == nil {
		return p.devicePage(c, http.StatusServiceUnavailable, pageData{Message: "Device sign-in is not available on this server."})
	}
	ctx := c.Context()
	now := p.now()
	cookie := c.Cookies(session.CookieName)
	// GET and HEAD show the page; only a POST body carries a code or a
	// decision (never a URL, where the form's token would be logged).
	show := c.Method() != http.MethodPost
	sess, err := session.Lookup(ctx, p.store, cookie, now)
	if errors.Is(err, model.ErrNotFound) {
		if !show {
			return p.devicePage(c, http.StatusForbidden, pageData{Message: "Your sign-in has ended. Open the page again."})
		}
		returnTo := p.path + PathDevice
		if code := c.Query("user_code"); code != "" && len(code) <= 32 {
			returnTo += "?user_code=" + url.QueryEscape(code)
		}
		setPageHeaders(c)
		c.Set(fiber.HeaderLocation, p.loginURL+"?return_to="+url.QueryEscape(returnTo))
		return c.SendStatus(http.StatusFound)
	}
	if err != nil {
		p.count(c, ep, oauth.ErrServerError.WithCause(fmt.Errorf("session lookup: %w", err)))
		return p.devicePage(c, http.StatusServiceUnavailable, pageData{Message: "Sign-in is temporarily unavailable. Try again in a moment."})
	}
	if show {
		return p.devicePage(c, http.StatusOK, pageData{UserCode: c.Query("user_code"), CSRF: deviceCSRF(cookie, "")})
	}

	form := c.Context().PostArgs()
	typed := string(form.Peek("user_code"))
	code := normalizeUserCode(typed)
	decision := string(form.Peek("decision"))
	csrfFor := ""
	if decision != "" {
		csrfFor = code // the decision form is bound to its code too
	}
	if subtle.ConstantTimeCompare(form.Peek("csrf"), []byte(deviceCSRF(cookie, csrfFor))) != 1 {
		return p.devicePage(c, http.StatusForbidden, pageData{Message: "This form has expired. Open the page again.", CSRF: deviceCSRF(cookie, "")})
	}
	entries, err := p.enterUserCode(ctx, sess.UserID, c.Context().RemoteIP().String(), now)
	if err != nil {
		p.count(c, ep, oauth.ErrServerError.WithCause(err))
		return p.devicePage(c, http.StatusServiceUnavailable, pageData{Message: "Sign-in is temporarily unavailable. Try again in a moment."})
	}
	if entries > maxUserCodeEntries {
		return p.devicePage(c, http.StatusTooManyRequests, pageData{Message: "Too many codes entered. Wait a few minutes, then try again."})
	}
	rec, err := p.store.DeviceCodes().ByUserCode(ctx, model.HashSecret(code))
	if code == "" || errors.Is(err, model.ErrNotFound) || err == nil &&
		(rec.Profile != p.name || rec.Status != model.DevicePending || !now.Before(rec.ExpiresAt)) {
		return p.devicePage(c, http.StatusBadRequest, pageData{Message: "That code is not valid, or has expired. Check the code your device shows.",
			UserCode: typed, CSRF: deviceCSRF(cookie, "")})
	}
	if err != nil {
		p.count(c, ep, oauth.ErrServerError.WithCause(fmt.Errorf("find device code: %w", err)))
		return p.devicePage(c, http.StatusServiceUnavailable, pageData{Message: "Sign-in is temporarily unavailable. Try again in a moment."})
	}
	if decision == "" {
		return p.devicePage(c, http.StatusOK, pageData{Confirm: true, Client: rec.ClientID, Scopes: describeScopes(rec.Scopes),
			UserCode: displayUserCode(code), CSRF: deviceCSRF(cookie, code)})
	}
	rec.Status = model.DeviceDenied
	if decision == "approve" {
		rec.Status, rec.Subject, rec.SessionID, rec.AuthTime, rec.ACR, rec.AMR =
			model.DeviceApproved, sess.UserID, sess.ID, sess.AuthTime, sess.ACR, sess.AMR
	}
	switch err := p.store.DeviceCodes().Decide(ctx, rec, now); {
	case errors.Is(err, model.ErrNotFound):
		return p.devicePage(c, http.StatusConflict, pageData{Message: "This code was already used, or has expired."})
	case err != nil:
		p.count(c, ep, oauth.ErrServerError.WithCause(fmt.Errorf("decide device code: %w", err)))
		return p.devicePage(c, http.StatusServiceUnavailable, pageData{Message: "Sign-in is temporarily unavailable. Try again in a moment."})
	}
	_ = p.trail.Record(ctx, model.AuditEvent{Type: auditDeviceDecide, Subject: sess.UserID, ClientID: rec.ClientID,
		IP: c.Context().RemoteIP().String(), Details: map[string]any{"decision": rec.Status}})
	if rec.Status == model.DeviceDenied {
		return p.devicePage(c, http.StatusOK, pageData{Done: true, Message: "You denied the device. It will not get access."})
	}
	return p.devicePage(c, http.StatusOK, pageData{Done: true, Message: "Done. Return to your device: it is signed in."})
}

// enterUserCode records that the user entered a code, then returns how
// many they entered in the guessing window, this one included (up to one
// more than the limit).
func (p *Profile) enterUserCode(ctx context.Context, userID, ip string, now time.Time) (int, error) {
	if err := p.trail.Record(ctx, model.AuditEvent{Time: now, Type: auditUserCodeEntry, Subject: userID, IP: ip}); err != nil {
		return 0, fmt.Errorf("record a user code entry: %w", err)
	}
	evs, err := p.store.Audit().List(ctx, model.AuditQuery{Type: auditUserCodeEntry, Subject: userID,
		Since: now.Add(-userCodeWindow), Limit: maxUserCodeEntries + 1})
	if err != nil {
		return 0, fmt.Errorf("count user code entries: %w", err)
	}
	return len(evs), nil
}

func (p *Profile) devicePage(c *fiber.Ctx, status int, d pageData) error {
	d.Title = "Connect a device"
	d.Action = p.path + PathDevice
	return sendPage(c, status, "device", d)
}

// describeScopes says what each scope grants, in the words of the consent
// page.
func describeScopes(scopes []string) []string {
	var out []string
	for _, s := range scopes {
		if t, ok := scopeText[s]; ok {
			out = append(out, t)
		} else {
			out = append(out, s)
		}
	}
	return out
}
