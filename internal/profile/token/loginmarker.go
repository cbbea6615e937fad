package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/keys"
)

// loginMarker signs the kg_login_after marker that an authorize request
// carries through the login page: the time before which a login does not
// satisfy its prompt=login or max_age. The marker travels in a URL the
// client could edit, so it is only believed with a MAC over the time and
// the request it was issued for; a forged or moved marker is ignored, and
// the user signs in again.
type loginMarker struct{ key []byte }

// newLoginMarker derives the MAC key from the profile's active signing
// key, which every node of the profile shares: a marker issued by one
// node is accepted by the next, and a key rotation only costs a login.
func newLoginMarker(signer *keys.Signer) (loginMarker, error) {
	key, err := signer.DeriveKey("keygate kg_login_after v1")
	return loginMarker{key: key}, err
}

// issue returns the marker for a request sent to the login page at now.
func (m loginMarker) issue(now time.Time, a *authzParams) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	return ts + "." + base64.RawURLEncoding.EncodeToString(m.mac(ts, a))
}

// check returns the time in marker if its MAC is right for a; ok is false
// for a marker that is malformed, forged or issued for another request.
func (m loginMarker) check(marker string, a *authzParams) (time.Time, bool) {
	ts, sig, found := strings.Cut(marker, ".")
	n, err := strconv.ParseInt(ts, 10, 64)
	if !found || err != nil || n <= 0 {
		return time.Time{}, false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, m.mac(ts, a)) {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// mac binds the time to the parameters that make the request what it is,
// so a marker cannot be moved to a request with another state or nonce.
func (m loginMarker) mac(ts string, a *authzParams) []byte {
	h := hmac.New(sha256.New, m.key)
	for _, k := range []string{"client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "prompt", "max_age"} {
		v := a.get(k)
		h.Write([]byte(strconv.Itoa(len(v))))
		h.Write([]byte{0})
		h.Write([]byte(v))
	}
	h.Write([]byte(ts))
	return h.Sum(nil)[:16]
}
