package served

import (
	"bufio"
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/datasource"
	"github.com/keygate/keygate/internal/httpframe"
	"github.com/keygate/keygate/internal/secret"
)

// FuzzTokenRequest sends whatever fasthttp parses as a request to the
// public listener's handler chain (framing check, then the set with a
// token endpoint): no panic, never a server error, every error JSON with an error
// code, and a token only in a 200 that names one.
func FuzzTokenRequest(f *testing.F) {
	basic := "Authorization: Basic c3ZjOnN2Yy1zZWNyZXQtMDEyMzQ1Njc4OQ==\r\n" // svc:svc-secret-0123456789
	for _, seed := range []string{
		"POST /oauth/v2/token HTTP/1.1\r\nHost: x\r\n" + basic + "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 29\r\n\r\ngrant_type=client_credentials",
		"POST /oauth/v2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 71\r\n\r\ngrant_type=client_credentials&client_id=svc&client_secret=svc-secret-01",
		"POST /oauth/v2/token HTTP/1.1\r\nHost: x\r\n" + basic + "Content-Type: application/x-www-form-urlencoded; charset=UTF-8\r\nContent-Length: 44\r\n\r\ngrant_type=client_credentials&scope=jobs+jobs",
		"POST /oauth/v2/token HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %%%\r\nContent-Length: 3\r\n\r\na=b",
		"GET /oauth/v2/token?grant_type=client_credentials HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	snap := snapWithSQLite(f, filepath.Join(f.TempDir(), "k.db"))
	tp := snap.Profiles["token"]
	tp.Endpoints = append(tp.Endpoints, "token")
	snap.Clients["svc"] = &config.Client{Meta: meta("svc"), Profile: "token", Secret: secret.New("svc-secret-0123456789"),
		GrantTypes: []string{config.GrantClientCredentials}, Scopes: []string{"jobs"}}
	pools := datasource.New(datasource.Options{Migrate: true})
	f.Cleanup(func() { pools.Close() })
	r, err := Build(snap, Deps{Stores: pools})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = r.Close() })
	h := httpframe.Handler(r.handler)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(bytes.NewReader(raw))); err != nil {
			return
		}
		if !bytes.HasPrefix(req.URI().Path(), []byte("/oauth/v2/token")) {
			return
		}
		var ctx fasthttp.RequestCtx
		req.CopyTo(&ctx.Request)
		h(&ctx)
		status, body := ctx.Response.StatusCode(), ctx.Response.Body()
		// 501 is the answer to a method nobody implements (RFC 9110 §9.1).
		if status >= 500 && status != fasthttp.StatusNotImplemented {
			t.Fatalf("%d %s for %q", status, body, raw)
		}
		var out struct {
			Error       string `json:"error"`
			AccessToken string `json:"access_token"`
		}
		if status != fasthttp.StatusMethodNotAllowed && status != fasthttp.StatusNotFound {
			if err := json.Unmarshal(body, &out); err != nil {
				t.Fatalf("%d: body is not JSON (%v): %q", status, err, body)
			}
			if (status == 200) != (out.AccessToken != "") || (status >= 400 && out.Error == "") {
				t.Fatalf("%d %s", status, body)
			}
		}
	})
}
