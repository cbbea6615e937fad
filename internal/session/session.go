// Package session is the SSO session: a server-side record in the zone's
// data source (so the next request may reach another node) and a browser
// cookie that holds only an opaque random value. The store keys the record
// by the SHA-256 of that value (model.HashSecret), so a database dump
// yields no usable cookie.
//
// The authentication profile creates sessions at login; the token profile
// looks them up at authorize and deletes them at logout.
package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/keygate/keygate/internal/storage/model"
)

// CookieName is the SSO session cookie: Secure, HttpOnly, SameSite=Lax,
// Path=/. Its value is 256 random bits, base64url without padding.
const CookieName = "keygate_session"

// Policy is a profile's session lifetimes (config sessions.idle-lifetime
// and sessions.absolute-lifetime). Idle ≤ 0 means no idle limit.
type Policy struct{ Idle, Absolute time.Duration }

// NewCookieValue returns a fresh random cookie value (256 bits, base64url).
func NewCookieValue() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Create stores a session for user u, authenticated now with acr and amr,
// and returns the cookie value (give it to SetCookie) and the record.
func Create(ctx context.Context, st model.Store, u model.User, acr string, amr []string, p Policy, now time.Time) (cookie string, s model.Session, err error) {
	if st == nil {
		return "", model.Session{}, errors.New("session: no store")
	}
	if p.Absolute <= 0 {
		return "", model.Session{}, errors.New("session: absolute lifetime must be positive")
	}
	now = now.UTC().Truncate(time.Microsecond) // the stores' precision
	cookie = NewCookieValue()
	s = model.Session{
		Hash:        model.HashSecret(cookie),
		ID:          model.NewID(),
		UserID:      u.ID,
		Zone:        u.Zone,
		AuthTime:    now,
		ACR:         acr,
		AMR:         append([]string(nil), amr...),
		IdleTimeout: max(p.Idle, 0),
		CreatedAt:   now,
		LastSeenAt:  now,
		ExpiresAt:   now.Add(p.Absolute),
	}
	if err := st.Sessions().Create(ctx, s); err != nil {
		return "", model.Session{}, fmt.Errorf("create session: %w", err)
	}
	return cookie, s, nil
}

// Lookup returns the live session for a cookie value and records the
// activity (extending the idle lifetime). A session past its idle or
// absolute lifetime, an unknown value or an empty one is model.ErrNotFound.
func Lookup(ctx context.Context, st model.Store, cookie string, now time.Time) (model.Session, error) {
	if cookie == "" || st == nil {
		return model.Session{}, model.ErrNotFound
	}
	h := model.HashSecret(cookie)
	s, err := st.Sessions().Get(ctx, h)
	if err != nil {
		return model.Session{}, err
	}
	if !now.Before(s.Expiry()) {
		return model.Session{}, model.ErrNotFound
	}
	if err := st.Sessions().Touch(ctx, h, now); err != nil {
		if errors.Is(err, model.ErrNotFound) {
			return model.Session{}, err // deleted meanwhile (logout on another node)
		}
		return model.Session{}, fmt.Errorf("touch session: %w", err)
	}
	s.LastSeenAt = now.UTC().Truncate(time.Microsecond)
	return s, nil
}

// Delete removes the session of a cookie value (logout). Idempotent; an
// empty value is a no-op.
func Delete(ctx context.Context, st model.Store, cookie string) error {
	if cookie == "" || st == nil {
		return nil
	}
	if err := st.Sessions().Delete(ctx, model.HashSecret(cookie)); err != nil && !errors.Is(err, model.ErrNotFound) {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// SetCookie sets the session cookie. maxAge ≤ 0 makes it a browser-session
// cookie (no Max-Age); otherwise pass the session's absolute lifetime so
// the browser forgets it no later than the server does.
func SetCookie(c *fiber.Ctx, value string, maxAge time.Duration) {
	ck := &fiber.Cookie{
		Name:     CookieName,
		Value:    value,
		Path:     "/",
		Secure:   true,
		HTTPOnly: true,
		SameSite: fiber.CookieSameSiteLaxMode,
	}
	if maxAge > 0 {
		ck.MaxAge = int(maxAge / time.Second)
		ck.Expires = time.Now().Add(maxAge)
	}
	c.Cookie(ck)
}

// ClearCookie tells the browser to drop the session cookie.
func ClearCookie(c *fiber.Ctx) {
	c.Cookie(&fiber.Cookie{
		Name:     CookieName,
		Value:    "",
		Path:     "/",
		Secure:   true,
		HTTPOnly: true,
		SameSite: fiber.CookieSameSiteLaxMode,
		MaxAge:   -1,
		Expires:  time.Unix(0, 0),
	})
}
