package token

import (
	"encoding/json"
	"testing"
)

// The access token's claims are appended without reflection; they must
// be what encoding/json writes, byte for byte, whatever the strings hold.
func TestAccessClaimsJSONIsEncodingJSONs(t *testing.T) {
	odd := []string{
		"", "plain", `quo"te`, `back\slash`, "<html>&", "tab\there", "nl\n", "\x00\x1f\x7f",
		"é ünïcode", "line\u2028sep\u2029", "bad utf-8 \xff\xfe", "emoji 🙂",
		"https://id.example.com/oauth/v2", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
	}
	auds := []audience{nil, {}, {"one"}, {"one", "two"}, {`q"`, "<>"}}
	for _, s := range odd {
		acts := []*actClaim{nil, {Sub: s}, {Sub: "svc", Act: &actClaim{Sub: s}}}
		cnfs := []*cnfClaim{nil, {JKT: s}}
		for i, aud := range auds {
			c := atClaims{Iss: s, Sub: s, Aud: aud, Exp: 1 << 40, Iat: -5, Jti: s, ClientID: s, Scope: s, Act: acts[i%len(acts)],
				Cnf: cnfs[i%len(cnfs)]}
			want, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.appendJSON(nil); string(got) != string(want) {
				t.Errorf("claims with %q, aud %q:\n got %s\nwant %s", s, aud, got, want)
			}
		}
	}
}

func FuzzAccessClaimsJSON(f *testing.F) {
	f.Add("svc", "a:read a:write", "https://api.example.com")
	f.Add("<&>", "\u2028", "\xff")
	f.Fuzz(func(t *testing.T, sub, scope, aud string) {
		c := atClaims{Iss: "https://id.example.com", Sub: sub, Aud: audience{aud, sub}, Jti: scope, ClientID: sub, Scope: scope,
			Cnf: &cnfClaim{JKT: aud}}
		want, _ := json.Marshal(c)
		if got := c.appendJSON(nil); string(got) != string(want) {
			t.Fatalf("got %s, want %s", got, want)
		}
	})
}
