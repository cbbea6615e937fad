package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// serveCeilingArg makes the bench serve the ceiling handler (a child
// process, measured like keygate).
const serveCeilingArg = "__serve-ceiling"

// ceilingApp is the yardstick of the efficiency ratios: the fastest
// handler that does the work no token server can skip, so that a ratio
// says what keygate costs beyond it. It parses the same form with the same
// parser (fasthttp's, under fiber), checks the client secret against its
// SHA-256 in constant time (HTTP Basic), signs one access token with the
// same claims and header as keygate's (RFC 9068) by calling crypto/ecdsa
// or crypto/ed25519 directly on a header encoded once, and writes the
// same response with the same headers. Nothing else: no config, no
// metrics, no storage, no policy, no JOSE library. The claims' values are
// the bench's own ASCII names, so the JSON is appended without escaping.
func ceilingApp(alg string, key crypto.Signer) (*fiber.App, error) {
	pub, err := jwk.FromRaw(key.Public())
	if err != nil {
		return nil, err
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	hdr, err := json.Marshal(map[string]string{"alg": alg, "kid": base64.RawURLEncoding.EncodeToString(tp), "typ": "at+jwt"})
	if err != nil {
		return nil, err
	}
	header := base64.RawURLEncoding.EncodeToString(hdr) + "."
	var sign func(signingInput []byte) ([]byte, error)
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		sign = func(in []byte) ([]byte, error) { return signES256(k, in) }
	case ed25519.PrivateKey:
		sign = func(in []byte) ([]byte, error) { return ed25519.Sign(k, in), nil }
	default:
		return nil, fmt.Errorf("ceiling: no %s signer for %T", alg, key)
	}
	want := sha256.Sum256([]byte(clientSecret))
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Post(profilePath+"/token", func(c *fiber.Ctx) error {
		args := c.Request().PostArgs()
		if string(args.Peek("grant_type")) != "client_credentials" {
			return fiber.ErrBadRequest
		}
		h := c.Request().Header.Peek(fiber.HeaderAuthorization)
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(string(h), "Basic "))
		if err != nil {
			return fiber.ErrUnauthorized
		}
		id, sec, _ := strings.Cut(string(raw), ":")
		got := sha256.Sum256([]byte(sec))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return fiber.ErrUnauthorized
		}
		scope := args.Peek("scope")
		var jti [16]byte
		_, _ = rand.Read(jti[:])
		now := time.Now()
		claims := make([]byte, 0, 256)
		claims = append(claims, `{"iss":"`+issuer+`","sub":"`...)
		claims = append(claims, id...)
		claims = append(claims, `","aud":"`+audience+`","exp":`...)
		claims = strconv.AppendInt(claims, now.Add(5*time.Minute).Unix(), 10)
		claims = append(claims, `,"iat":`...)
		claims = strconv.AppendInt(claims, now.Unix(), 10)
		claims = append(claims, `,"jti":"`...)
		claims = base64.RawURLEncoding.AppendEncode(claims, jti[:])
		claims = append(claims, `","client_id":"`...)
		claims = append(claims, id...)
		if len(scope) > 0 {
			claims = append(claims, `","scope":"`...)
			claims = append(claims, scope...)
		}
		claims = append(claims, `"}`...)
		tok := make([]byte, 0, 512)
		tok = append(tok, header...)
		tok = base64.RawURLEncoding.AppendEncode(tok, claims)
		sig, err := sign(tok)
		if err != nil {
			return err
		}
		tok = append(tok, '.')
		tok = base64.RawURLEncoding.AppendEncode(tok, sig)
		body := make([]byte, 0, len(tok)+96)
		body = append(body, `{"access_token":"`...)
		body = append(body, tok...)
		body = append(body, `","token_type":"Bearer","expires_in":300`...)
		if len(scope) > 0 {
			body = append(body, `,"scope":"`...)
			body = append(body, scope...)
			body = append(body, '"')
		}
		body = append(body, '}')
		r := c.Response()
		r.Header.SetContentType("application/json")
		r.Header.Set(fiber.HeaderCacheControl, "no-store")
		r.Header.Set(fiber.HeaderPragma, "no-cache")
		r.SetBodyRaw(body)
		return nil
	})
	return app, nil
}

// signES256 signs in with crypto/ecdsa and returns the JWS signature: r
// and s as two 32-byte big-endian integers (RFC 7518 §3.4), taken from
// the ASN.1 signature the standard library's fast path returns.
func signES256(k *ecdsa.PrivateKey, in []byte) ([]byte, error) {
	digest := sha256.Sum256(in)
	der, err := ecdsa.SignASN1(rand.Reader, k, digest[:])
	if err != nil {
		return nil, err
	}
	var r, s cryptobyte.String
	seq := cryptobyte.String(der)
	var inner cryptobyte.String
	if !seq.ReadASN1(&inner, asn1.SEQUENCE) || !inner.ReadASN1(&r, asn1.INTEGER) || !inner.ReadASN1(&s, asn1.INTEGER) {
		return nil, errors.New("ecdsa: malformed signature")
	}
	out := make([]byte, 64)
	fixed := func(dst []byte, v []byte) {
		for len(v) > 0 && v[0] == 0 {
			v = v[1:]
		}
		copy(dst[32-len(v):], v)
	}
	fixed(out[:32], r)
	fixed(out[32:], s)
	return out, nil
}

// serveCeilingMain is the child: serve the ceiling of ALG on 127.0.0.1:0
// with the key in KEY.pem (PKCS#8), log the address as keygate does, and
// stop on SIGTERM.
func serveCeilingMain(args []string) int {
	if len(args) < 2 || len(args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: keygate-bench "+serveCeilingArg+" ALG KEY.pem [PROFILE]")
		return 2
	}
	if err := serveCeiling(args); err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		return 1
	}
	return 0
}

func serveCeiling(args []string) error {
	key, err := readKey(args[1])
	if err != nil {
		return err
	}
	app, err := ceilingApp(args[0], key)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	line, _ := json.Marshal(map[string]string{"level": "INFO", "msg": "ceiling serving", "public": ln.Addr().String()})
	fmt.Fprintln(os.Stderr, string(line))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		var prof profiler
		for s := range sig {
			switch s {
			case syscall.SIGUSR1:
				if len(args) == 3 {
					prof.start(args[2])
				}
			case syscall.SIGUSR2:
				prof.stop()
			default:
				prof.stop()
				_ = app.ShutdownWithTimeout(5 * time.Second)
				return
			}
		}
	}()
	return app.Listener(ln)
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%T is not a signing key", k)
	}
	return signer, nil
}

// runCeiling measures the ceiling of s.alg: by default in a child process
// (like keygate: its own Go runtime and GC, its CPU and RSS read from
// /proc); with -baseline-inprocess on a listener of the bench process.
func runCeiling(ctx context.Context, o options, s scenario, k *benchKeys) (*result, error) {
	var addr, profile string
	var srv *server
	pid := 0
	if o.baselineIn {
		key, err := readKey(k.files[s.alg])
		if err != nil {
			return nil, err
		}
		app, err := ceilingApp(s.alg, key)
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		go func() { _ = app.Listener(ln) }()
		defer app.ShutdownWithTimeout(5 * time.Second)
		addr = ln.Addr().String()
	} else {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		args := []string{serveCeilingArg, s.alg, k.files[s.alg]}
		if o.cpuprofile != "" {
			profile = strings.TrimSuffix(o.cpuprofile, ".pprof") + "-" + s.name + ".pprof"
			args = append(args, profile)
		}
		cmd := exec.CommandContext(ctx, self, args...)
		cmd.Env = serverEnv("", "")
		srv, err = start(ctx, cmd)
		if err != nil {
			return nil, err
		}
		defer srv.stop()
		addr, pid = srv.public, srv.pid
	}
	if !loopback(addr) {
		return nil, fmt.Errorf("ceiling address %s is not loopback", addr)
	}
	w := newWindow(srv, pid, profile)
	out := drive(ctx, tokenLoad(addr, profilePath+"/token"), o.concurrency, o.warmup, o.duration, w.begin, w.end)
	r, err := w.result(s, o.concurrency, out)
	if err != nil {
		return nil, err
	}
	if o.baselineIn {
		r.Storage = "none-inprocess" // server CPU and RSS are the bench process's own
	}
	reportErrors(s, out)
	if profile != "" {
		srv.stop()
		logf("%s: CPU profile of the measured window: %s", s.id(), profile)
	}
	return r, nil
}
