package model

import "errors"

// Validate methods check what a backend needs to store a record (a key, an
// expiry), so a caller bug fails with a clear message instead of a
// constraint error.

func (t AccessToken) Validate() error {
	return need("access token", !t.Hash.IsZero() && t.JTI != "" && !t.ExpiresAt.IsZero() && t.RevokedAt.IsZero(),
		"hash, jti and expiry are required; RevokedAt is set only by Revocations.Revoke")
}

func (t RefreshToken) Validate() error {
	return need("refresh token", !t.Hash.IsZero() && t.FamilyID != "" && !t.ExpiresAt.IsZero(),
		"hash, family id and expiry are required")
}

func (c AuthCode) Validate() error {
	return need("auth code", !c.Hash.IsZero() && !c.ExpiresAt.IsZero(), "hash and expiry are required")
}

func (r PushedRequest) Validate() error {
	return need("pushed request", !r.Hash.IsZero() && r.ClientID != "" && r.Profile != "" && !r.ExpiresAt.IsZero(),
		"hash, client id, profile and expiry are required")
}

func (d DeviceCode) Validate() error {
	return need("device code", !d.Hash.IsZero() && !d.UserCode.IsZero() && d.ClientID != "" && d.Profile != "" &&
		d.Status == DevicePending && d.Interval > 0 && !d.ExpiresAt.IsZero(),
		"hashes, client id, profile, a pending status, an interval and expiry are required")
}

func (s Session) Validate() error {
	return need("session", !s.Hash.IsZero() && s.ID != "" && !s.ExpiresAt.IsZero() &&
		s.IdleTimeout >= 0 && (s.IdleTimeout == 0 || !s.LastSeenAt.IsZero()),
		"hash, id and expiry are required; an idle timeout needs LastSeenAt")
}

func (u User) Validate() error {
	return need("user", u.ID != "" && u.Zone != "" && u.Username != "", "id, zone and username are required")
}

func (n NodeStatus) Validate() error {
	return need("node", n.ID != "" && !n.ExpiresAt.IsZero(), "id and expiry are required")
}

func need(what string, ok bool, msg string) error {
	if ok {
		return nil
	}
	return errors.New(what + ": " + msg)
}
