package authn

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"html/template"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/keygate/keygate/internal/password"
	"github.com/keygate/keygate/internal/session"
	"github.com/keygate/keygate/internal/storage/model"
)

// CSRFCookie holds the login form's token (HttpOnly, SameSite=Strict,
// Secure, Path=/). The form carries the same value in its "csrf" field;
// they are compared in constant time, and the token must carry Keygate's
// MAC (csrfKey), so a pair an attacker made up is refused. The __Host-
// prefix makes browsers refuse the cookie from a sibling subdomain or
// over plain http, which is how a login CSRF plants its own token.
const CSRFCookie = "__Host-keygate_csrf"

// Input bounds: longer values are refused before any work.
const (
	maxUsername = 256
	maxPassword = 1024
)

// Messages users see. The lockout message is lockoutMessage.
const (
	msgExpired     = "Your sign-in form expired; please try again."
	msgBadLogin    = "Incorrect username or password."
	msgMissing     = "Enter your username and password."
	msgAcctLocked  = "This account is locked. Contact your administrator."
	msgUnavailable = "Sign-in is temporarily unavailable. Please try again in a moment."
	msgBusy        = "Too many people are signing in right now. Please try again in a moment."
	msgBadLink     = "This sign-in link is not valid. Go back to the application and sign in from there."
)

// timeout bounds the store calls of one login.
const timeout = 10 * time.Second

func (p *Profile) getLogin(c *fiber.Ctx) error {
	rt := c.Query("return_to")
	if !p.validReturnTo(rt) {
		return p.errorPage(c, fiber.StatusBadRequest, "Cannot sign in", msgBadLink)
	}
	tok := c.Cookies(CSRFCookie)
	if !p.validCSRF(tok) {
		tok = p.newCSRF(c)
	}
	return p.loginPage(c, fiber.StatusOK, loginData{ReturnTo: rt, CSRF: tok})
}

func (p *Profile) postLogin(c *fiber.Ctx) error {
	rt := c.FormValue("return_to")
	if !p.validReturnTo(rt) {
		return p.errorPage(c, fiber.StatusBadRequest, "Cannot sign in", msgBadLink)
	}
	username := normaliseUsername(c.FormValue("username"))
	if len(username) > maxUsername {
		username = ""
	}
	form := loginData{ReturnTo: rt, Username: username}

	cookieTok, formTok := c.Cookies(CSRFCookie), c.FormValue("csrf")
	if !p.validCSRF(cookieTok) || subtle.ConstantTimeCompare([]byte(cookieTok), []byte(formTok)) != 1 {
		form.CSRF, form.Error = p.newCSRF(c), msgExpired
		return p.loginPage(c, fiber.StatusForbidden, form)
	}
	form.CSRF = cookieTok
	pw := c.FormValue("password")
	if username == "" || pw == "" || len(pw) > maxPassword {
		form.Error = msgMissing
		return p.loginPage(c, fiber.StatusBadRequest, form)
	}
	if p.store == nil {
		return p.errorPage(c, fiber.StatusServiceUnavailable, "Cannot sign in", msgUnavailable)
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), timeout)
	defer cancel()
	now := p.now()
	ip := p.clientIP(c)
	ev := model.AuditEvent{Zone: p.zone, Subject: username, IP: ip}

	if wait := p.ip.Attempt(ip, p.lockout.maxIP, p.lockout.window, now); wait > 0 {
		p.audit(ctx, ev, AuditLockout, now, map[string]any{"reason": "ip", "profile": p.name})
		form.Error = lockoutMessage(wait)
		return p.loginPage(c, fiber.StatusTooManyRequests, form)
	}
	// Count this attempt against the account before reading its audited
	// failures, and take it back only once it is decided (a success, or
	// its failure written): parallel guesses at one account each see the
	// others (accountsInFlight).
	key := p.zone + "\x00" + username
	inFlight, tracked := accountsInFlight.acquire(key)
	if !tracked {
		p.ip.Forgive(ip, now)
		return p.errorPage(c, fiber.StatusServiceUnavailable, "Cannot sign in", msgBusy)
	}
	settled := false
	settle := func() { // idempotent
		if !settled {
			settled = true
			accountsInFlight.release(key)
		}
	}
	defer settle()
	wait, err := p.accountWait(ctx, username, now, inFlight-1)
	if err != nil || wait > 0 {
		p.ip.Forgive(ip, now) // not a guess: it never reached the check
	}
	if err != nil {
		p.log.Error("login: lockout check failed", "profile", p.name, "err", err)
		return p.errorPage(c, fiber.StatusServiceUnavailable, "Cannot sign in", msgUnavailable)
	}
	if wait > 0 {
		details := map[string]any{"reason": "account", "profile": p.name}
		if inFlight > 1 {
			details["in_flight"] = inFlight - 1
		}
		p.audit(ctx, ev, AuditLockout, now, details)
		form.Error = lockoutMessage(wait)
		return p.loginPage(c, fiber.StatusTooManyRequests, form)
	}

	user, err := p.store.Users().GetByUsername(ctx, p.zone, username)
	found := err == nil
	if err != nil && !errors.Is(err, model.ErrNotFound) {
		p.log.Error("login: user lookup failed", "profile", p.name, "err", err)
		p.ip.Forgive(ip, now)
		return p.errorPage(c, fiber.StatusServiceUnavailable, "Cannot sign in", msgUnavailable)
	}
	// No password is checked unless its attempt is on record. One that
	// cannot be recorded gets the wrong-password answer, so a database
	// that refuses writes neither allows uncounted guesses nor tells a
	// right password from a wrong one.
	ev.Type, ev.Time, ev.Details = AuditLoginAttempt, now, map[string]any{"profile": p.name}
	if err := p.trail.Record(ctx, ev); err != nil {
		p.log.Error("login: cannot record the attempt; refused unchecked", "profile", p.name, "err", err)
		form.Error = msgBadLogin
		return p.loginPage(c, fiber.StatusBadRequest, form)
	}
	settle() // on record: other attempts now count it from the audit log
	// The attempt was counted against the IP above (Attempt); it is
	// forgiven on success or when the node is too busy to check.
	release, slot := acquireHashSlot(ctx)
	if !slot {
		p.ip.Forgive(ip, now)
		return p.errorPage(c, fiber.StatusServiceUnavailable, "Cannot sign in", msgBusy)
	}
	defer release()
	var ok, rehash bool
	if found && user.PasswordHash != "" {
		var verr error
		ok, rehash, verr = password.Verify(pw, user.PasswordHash, p.params)
		if verr != nil {
			p.log.Error("login: stored password hash is malformed", "profile", p.name, "user", user.ID)
		}
	} else {
		// Unknown user (or no password): spend the same time as a real
		// check, so the response time does not tell which.
		_, _, _ = password.Verify(pw, p.dummyHash(), p.params)
	}
	if !ok {
		reason := "bad password"
		if !found {
			reason = "unknown user"
		}
		p.audit(ctx, ev, AuditLoginFailure, now, map[string]any{"reason": reason, "profile": p.name})
		if wait, err := p.accountWait(ctx, username, now, 0); err == nil && wait > 0 {
			p.audit(ctx, ev, AuditLockout, now, map[string]any{"reason": "account", "profile": p.name, "failures": p.lockout.max})
			form.Error = lockoutMessage(wait)
			return p.loginPage(c, fiber.StatusTooManyRequests, form)
		}
		form.Error = msgBadLogin
		return p.loginPage(c, fiber.StatusBadRequest, form)
	}
	p.ip.Forgive(ip, now)
	if user.Status != model.UserActive {
		p.audit(ctx, ev, AuditLoginFailure, now, map[string]any{"reason": "account " + user.Status, "profile": p.name, "user_id": user.ID})
		form.Error = msgAcctLocked
		return p.loginPage(c, fiber.StatusForbidden, form)
	}
	if rehash {
		h := password.Hash(pw, p.params) // outside the update's transaction
		err := p.store.Users().Update(ctx, user.ID, func(old model.User) (model.User, error) {
			if old.PasswordHash == user.PasswordHash { // not changed meanwhile
				old.PasswordHash = h
			}
			return old, nil
		})
		if err != nil {
			p.log.Warn("login: rehash failed", "profile", p.name, "user", user.ID, "err", err)
		}
	}
	cookie, s, err := session.Create(ctx, p.store, user, ACRPassword, []string{AMRPassword}, p.policy, now)
	if err != nil {
		// The same answer as a wrong password: a failure here must not
		// confirm that the password was right.
		p.log.Error("login: create session failed", "profile", p.name, "err", err)
		form.Error = msgBadLogin
		return p.loginPage(c, fiber.StatusBadRequest, form)
	}
	p.audit(ctx, ev, AuditLoginSuccess, p.now(), map[string]any{"user_id": user.ID, "sid": s.ID, "profile": p.name, "amr": AMRPassword})
	session.SetCookie(c, cookie, p.policy.Absolute)
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderLocation, rt)
	return c.SendStatus(fiber.StatusSeeOther)
}

// audit records an event; a failure is logged by the trail, not shown
// (the login's outcome does not depend on it, except that lockout
// counting needs it).
func (p *Profile) audit(ctx context.Context, ev model.AuditEvent, typ string, now time.Time, details map[string]any) {
	ev.Type, ev.Time, ev.Details = typ, now, details
	_ = p.trail.Record(ctx, ev)
}

func (p *Profile) dummyHash() string {
	p.dummyOnce.Do(func() { p.dummy = password.Hash(session.NewCookieValue(), p.params) })
	return p.dummy
}

// normaliseUsername is how usernames are stored and looked up: trimmed
// and lower-cased (keygate user add does the same).
func normaliseUsername(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// NormaliseUsername is normaliseUsername, for keygate user add.
func NormaliseUsername(s string) string { return normaliseUsername(s) }

func (p *Profile) newCSRF(c *fiber.Ctx) string {
	nonce := session.NewCookieValue()
	tok := nonce + "." + p.csrfMAC(nonce)
	c.Cookie(&fiber.Cookie{
		Name:     CSRFCookie,
		Value:    tok,
		Path:     "/", // required by the __Host- prefix
		Secure:   true,
		HTTPOnly: true,
		SameSite: fiber.CookieSameSiteStrictMode,
	})
	return tok
}

// validCSRF reports whether tok is a token this profile issued: a nonce
// and its MAC.
func (p *Profile) validCSRF(tok string) bool {
	nonce, mac, ok := strings.Cut(tok, ".")
	return ok && len(nonce) == 43 && hmac.Equal([]byte(mac), []byte(p.csrfMAC(nonce)))
}

func (p *Profile) csrfMAC(nonce string) string {
	h := hmac.New(sha256.New, p.csrfKey)
	h.Write([]byte(p.name))
	h.Write([]byte{0})
	h.Write([]byte(nonce))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

// pageHeaders: no caching, no framing, no third-party anything.
func pageHeaders(c *fiber.Ctx) {
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	// No form-action: Chrome applies it to the redirects after the POST,
	// which end at the client's redirect URI.
	c.Set(fiber.HeaderContentSecurityPolicy, "default-src 'none'; style-src 'self'; img-src 'self' data:; font-src 'self'; frame-ancestors 'none'; base-uri 'none'")
}

func (p *Profile) loginPage(c *fiber.Ctx, status int, d loginData) error {
	d.Lang, d.Title = "en", "Sign in"
	d.Action = p.path + PathLogin
	d.StaticPath = p.path + PathStatic
	d.Federated = p.federatedButtons(d.ReturnTo)
	return p.render(c, status, p.ui.login, defaultUI.login, d)
}

func (p *Profile) errorPage(c *fiber.Ctx, status int, title, msg string) error {
	d := errorData{Lang: "en", Title: title, Message: msg, StaticPath: p.path + PathStatic}
	return p.render(c, status, p.ui.errPage, defaultUI.errPage, d)
}

// render executes t, falling back to the built-in template if an
// operator's template fails at run time: a login page never answers 500.
func (p *Profile) render(c *fiber.Ctx, status int, t, fallback *template.Template, data any) error {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		p.log.Error("login: template failed; using the built-in one", "profile", p.name, "template", t.Name(), "err", err)
		buf.Reset()
		if err := fallback.Execute(&buf, data); err != nil {
			return err
		}
	}
	pageHeaders(c)
	return c.Status(status).Send(buf.Bytes())
}
