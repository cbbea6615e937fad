package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// Console roles.
const (
	RoleViewer = "viewer"
	RoleEditor = "editor"
)

// session is a signed-in person, kept in a signed cookie (the admin node
// is one replica and holds no session table; a restart, which changes the
// key, signs everyone out).
type session struct {
	ID      string `json:"id"`
	Subject string `json:"sub"`
	Name    string `json:"name"`
	Email   string `json:"email"`
	Role    string `json:"role"`
	// BreakGlass: signed in with the admin token, not through SSO.
	BreakGlass bool  `json:"bg,omitempty"`
	Expires    int64 `json:"exp"`
}

// Actor is how the audit trail and commits name the person.
func (s *session) Actor() string {
	switch {
	case s.BreakGlass:
		return "break-glass (admin token)"
	case s.Email != "":
		return s.Email
	}
	return s.Subject
}

const (
	sessionCookie = "keygate_console"
	loginCookie   = "keygate_console_login"
	sessionTTL    = 8 * time.Hour
	loginTTL      = 10 * time.Minute
)

// sealer signs and checks cookie values: base64url(json).base64url(mac).
type sealer struct{ key []byte }

func newSealer() (*sealer, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	return &sealer{key: k}, nil
}

func (s *sealer) mac(purpose string, data []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)
}

func (s *sealer) seal(purpose string, v any) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(data) + "." + enc.EncodeToString(s.mac(purpose, data)), nil
}

var errBadSeal = errors.New("invalid or tampered cookie")

func (s *sealer) open(purpose, value string, v any) error {
	enc := base64.RawURLEncoding
	body, sig, ok := strings.Cut(value, ".")
	if !ok || len(value) > 8192 {
		return errBadSeal
	}
	data, err1 := enc.DecodeString(body)
	mac, err2 := enc.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, s.mac(purpose, data)) {
		return errBadSeal
	}
	return json.Unmarshal(data, v)
}

// csrf is the form token of a session: bound to it, so a token from
// another session (or none) is refused.
func (s *sealer) csrf(sess *session) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("csrf", []byte(sess.ID)))
}

func (s *sealer) checkCSRF(sess *session, token string) bool {
	return token != "" && hmac.Equal([]byte(token), []byte(s.csrf(sess)))
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (c *Server) setCookie(w http.ResponseWriter, name, value string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: basePath, MaxAge: int(ttl.Seconds()),
		HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteLaxMode})
}

func (c *Server) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: basePath, MaxAge: -1, HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteLaxMode})
}

// session returns the signed-in person, or nil.
func (c *Server) session(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	var s session
	if c.seal.open("session", ck.Value, &s) != nil || time.Now().Unix() > s.Expires || (s.Role != RoleViewer && s.Role != RoleEditor) {
		return nil
	}
	return &s
}
