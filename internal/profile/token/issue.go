package token

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/storage/model"
)

// issuer makes the tokens the grants hand out: it signs JWTs with the
// profile's active key and stores what must be found again later (opaque
// access tokens, refresh tokens). Every grant issues through it, so a
// token looks the same whichever grant it came from.
type issuer struct {
	profile         string // the profile's name, recorded with stored tokens
	iss             string // the issuer URL
	signer          *keys.Signer
	store           model.Store // nil: stored tokens fail with server_error
	now             func() time.Time
	idTokenLifetime time.Duration
	refreshLifetime time.Duration
}

// newSecret returns a random 256-bit bearer secret (code, refresh token),
// base64url without padding.
func newSecret() string {
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// tokenResponse serializes RFC 6749 §5.1. Access tokens are base64url
// (opaque) or JWS compact (base64url and dots) and scope tokens exclude
// '"' and '\' (RFC 6749 §3.3), so no JSON escaping is needed.
// tokenType is Bearer or, for a token bound to a DPoP key, DPoP.
func tokenResponse(token []byte, tokenType string, lifetime time.Duration, scopes []string) []byte {
	b := make([]byte, 0, len(token)+128)
	b = append(b, `{"access_token":"`...)
	b = append(b, token...)
	b = append(b, `","token_type":"`...)
	b = append(b, tokenType...)
	b = append(b, `","expires_in":`...)
	b = strconv.AppendInt(b, int64(lifetime/time.Second), 10)
	if len(scopes) > 0 {
		b = append(b, `,"scope":"`...)
		for i, s := range scopes {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, s...)
		}
		b = append(b, '"')
	}
	return append(b, '}')
}

// accessToken is what to put in an access token.
type accessToken struct {
	subject  string
	client   *client
	scopes   []string
	audience []string
	jti      string    // "" = a new one; the code grant pre-assigns it
	act      *actClaim // the actor of a delegated token (token exchange)
	notAfter time.Time // a bound on the expiry (token exchange); zero: none
	jkt      string    // the DPoP key it is bound to (RFC 9449 §6); "": a bearer token
}

// accessTokenType is the token_type of an access token bound to jkt
// (RFC 9449 §5), or of a bearer token when jkt is "".
func accessTokenType(jkt string) string {
	if jkt != "" {
		return tokenTypeDPoP
	}
	return "Bearer"
}

// cnfClaim is the confirmation claim of a DPoP-bound JWT (RFC 9449 §6.1,
// RFC 7800): the SHA-256 thumbprint of the key.
type cnfClaim struct {
	JKT string `json:"jkt"`
}

// atClaims are the claims of a JWT access token (RFC 9068 §2.2).
type atClaims struct {
	Iss      string    `json:"iss"`
	Sub      string    `json:"sub"`
	Aud      audience  `json:"aud"`
	Exp      int64     `json:"exp"`
	Iat      int64     `json:"iat"`
	Jti      string    `json:"jti"`
	ClientID string    `json:"client_id"`
	Scope    string    `json:"scope,omitempty"`
	Act      *actClaim `json:"act,omitempty"`
	Cnf      *cnfClaim `json:"cnf,omitempty"`
}

// audience marshals as a string when single (RFC 7519 §4.1.3).
type audience []string

func (a audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

func (a *audience) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = audience{s}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(a))
}

// typAccessToken is the JWT access token media type (RFC 9068 §2.1).
const typAccessToken = "at+jwt"

// issueAccess makes an access token in the client's format. A JWT
// (RFC 9068) is signed and never stored; an opaque token is a random
// 256-bit handle whose SHA-256 is stored.
func (is *issuer) issueAccess(ctx context.Context, at accessToken) ([]byte, error) {
	now := is.now()
	exp := now.Add(at.client.lifetime)
	if !at.notAfter.IsZero() && at.notAfter.Before(exp) {
		exp = at.notAfter
	}
	jti := at.jti
	if jti == "" {
		jti = model.NewID()
	}
	if at.client.format == config.FormatOpaque {
		if is.store == nil {
			return nil, fmt.Errorf("opaque access tokens need a data source; profile %s has none", is.profile)
		}
		handle := newSecret()
		err := is.store.AccessTokens().Create(ctx, model.AccessToken{
			Hash:      model.HashSecret(handle),
			JTI:       jti,
			ClientID:  at.client.id,
			Subject:   at.subject,
			Scopes:    at.scopes,
			Audience:  at.audience,
			Profile:   is.profile,
			IssuedAt:  now,
			ExpiresAt: exp,
			JKT:       at.jkt,
		})
		if err != nil {
			return nil, fmt.Errorf("store access token: %w", err)
		}
		return []byte(handle), nil
	}
	c := atClaims{
		Iss:      is.iss,
		Sub:      at.subject,
		Aud:      at.audience,
		Exp:      exp.Unix(),
		Iat:      now.Unix(),
		Jti:      jti,
		ClientID: at.client.id,
		Scope:    strings.Join(at.scopes, " "),
		Act:      at.act,
	}
	if at.jkt != "" {
		c.Cnf = &cnfClaim{JKT: at.jkt}
	}
	return is.signJWT(c.appendJSON(make([]byte, 0, 256)), typAccessToken, "access token")
}

// appendJSON appends the claims as encoding/json would marshal them, byte
// for byte, without reflection: every JWT access token passes here.
func (c *atClaims) appendJSON(b []byte) []byte {
	b = append(b, `{"iss":`...)
	b = appendJSONString(b, c.Iss)
	b = append(b, `,"sub":`...)
	b = appendJSONString(b, c.Sub)
	b = append(b, `,"aud":`...)
	switch {
	case len(c.Aud) == 1:
		b = appendJSONString(b, c.Aud[0])
	case c.Aud == nil:
		b = append(b, "null"...)
	default:
		b = append(b, '[')
		for i, a := range c.Aud {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, a)
		}
		b = append(b, ']')
	}
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, c.Exp, 10)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, c.Iat, 10)
	b = append(b, `,"jti":`...)
	b = appendJSONString(b, c.Jti)
	b = append(b, `,"client_id":`...)
	b = appendJSONString(b, c.ClientID)
	if c.Scope != "" {
		b = append(b, `,"scope":`...)
		b = appendJSONString(b, c.Scope)
	}
	if c.Act != nil {
		// Only exchanged tokens have one: the slow path is fine.
		act, _ := json.Marshal(c.Act) // strings only: always marshals
		b = append(b, `,"act":`...)
		b = append(b, act...)
	}
	if c.Cnf != nil {
		b = append(b, `,"cnf":{"jkt":`...)
		b = appendJSONString(b, c.Cnf.JKT)
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string. Printable ASCII other than
// the characters encoding/json escapes is copied as is; anything else
// goes through encoding/json, so the output is always what it writes.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// signJWT signs a JWT's claims (payload, JSON) with the typ header typ;
// tokenName says, in a failure, what was being signed.
func (is *issuer) signJWT(payload []byte, typ, tokenName string) ([]byte, error) {
	tok, err := is.signer.Sign(payload, typ)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", tokenName, err)
	}
	return tok, nil
}

// userTokens is what a user's grant (code or refresh token) authorizes.
type userTokens struct {
	client   *client
	subject  string
	scopes   []string
	audience []string
	sid      string
	nonce    string // only from a code (OpenID Connect Core 1.0 §12.2)
	authTime time.Time
	acr      string
	amr      []string
	jti      string // pre-assigned access token id, or ""
	family   string // refresh token family; "" = no new refresh token
	// refresh is the rotated refresh token to return ("" = none).
	refresh string
	// jkt is the DPoP key of the request's proof ("" = none): the access
	// token is bound to it, and so is a new refresh token family of a
	// public client (RFC 9449 §5).
	jkt string
}

// userTokenResponse is RFC 6749 §5.1 plus the id_token of OpenID Connect
// Core 1.0 §3.1.3.3.
type userTokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
}

// issueUser issues the access token, the ID token (scope openid) and,
// for the code grant of a client allowed refresh_token, the first refresh
// token of the family.
func (is *issuer) issueUser(ctx context.Context, u userTokens) ([]byte, *oauth.Error) {
	atb, err := is.issueAccess(ctx, accessToken{subject: u.subject, client: u.client, scopes: u.scopes, audience: u.audience, jti: u.jti, jkt: u.jkt})
	if err != nil {
		return nil, oauth.ErrServerError.WithCause(err)
	}
	at := string(atb)
	resp := userTokenResponse{AccessToken: at, TokenType: accessTokenType(u.jkt), ExpiresIn: int64(u.client.lifetime / time.Second),
		Scope: strings.Join(u.scopes, " "), RefreshToken: u.refresh}
	if slices.Contains(u.scopes, "openid") {
		if resp.IDToken, err = is.issueID(u, at); err != nil {
			return nil, oauth.ErrServerError.WithCause(err)
		}
	}
	if u.family != "" && u.client.grants[config.GrantRefreshToken] {
		now := is.now()
		rt := newSecret()
		// RFC 9449 §5: a public client's refresh tokens are bound to its
		// DPoP key; a confidential client's are bound to its credentials
		// already, and may outlive the key.
		var rtJKT string
		if u.client.public {
			rtJKT = u.jkt
		}
		err := is.store.RefreshTokens().Create(ctx, model.RefreshToken{
			Hash: model.HashSecret(rt), FamilyID: u.family, ClientID: u.client.id, Subject: u.subject,
			Scopes: u.scopes, Audience: u.audience, SessionID: u.sid, AuthTime: u.authTime, ACR: u.acr, AMR: u.amr,
			Profile: is.profile, IssuedAt: now, ExpiresAt: now.Add(is.refreshLifetime), JKT: rtJKT,
		})
		if err != nil {
			return nil, oauth.ErrServerError.WithCause(fmt.Errorf("store refresh token: %w", err))
		}
		resp.RefreshToken = rt
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return nil, oauth.ErrServerError.WithCause(err)
	}
	return b, nil
}

// idClaims are the ID token claims (OpenID Connect Core 1.0 §2, §3.1.3.6).
type idClaims struct {
	Iss      string   `json:"iss"`
	Sub      string   `json:"sub"`
	Aud      string   `json:"aud"`
	Exp      int64    `json:"exp"`
	Iat      int64    `json:"iat"`
	AuthTime int64    `json:"auth_time,omitempty"`
	Nonce    string   `json:"nonce,omitempty"`
	ACR      string   `json:"acr,omitempty"`
	AMR      []string `json:"amr,omitempty"`
	SID      string   `json:"sid,omitempty"`
	AtHash   string   `json:"at_hash,omitempty"`
	AZP      string   `json:"azp,omitempty"`
}

// typIDToken is the ID token's typ header.
const typIDToken = "JWT"

func (is *issuer) issueID(u userTokens, accessToken string) (string, error) {
	now := is.now()
	c := idClaims{
		Iss: is.iss, Sub: u.subject, Aud: u.client.id, Exp: now.Add(is.idTokenLifetime).Unix(), Iat: now.Unix(),
		Nonce: u.nonce, ACR: u.acr, AMR: u.amr, SID: u.sid, AtHash: atHash(is.signer.Alg, accessToken),
	}
	if !u.authTime.IsZero() {
		c.AuthTime = u.authTime.Unix()
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("marshal id token: %w", err)
	}
	tok, err := is.signJWT(payload, typIDToken, "id token")
	return string(tok), err
}

// atHash is the left half of the hash of the access token's ASCII octets,
// base64url (OpenID Connect Core 1.0 §3.1.3.6), with the hash of the
// signing alg: SHA-256 for ES256 and RS256, SHA-512 for EdDSA (Ed25519
// hashes with SHA-512; go-oidc and other verifiers expect it).
func atHash(alg jwa.SignatureAlgorithm, token string) string {
	var h hash.Hash
	switch alg {
	case jwa.EdDSA:
		h = sha512.New()
	default:
		h = sha256.New()
	}
	h.Write([]byte(token))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}
