package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// serveBaselineArg makes the bench serve the baseline handler (a child
// process, measured like keygate).
const serveBaselineArg = "__serve-baseline"

// baselineApp is the yardstick of the efficiency ratio, so that the ratio
// says what keygate costs beyond the work no token server can skip: a
// minimal fiber handler that checks a client secret against its SHA-256
// (HTTP Basic) and signs one ES256 JWT access token with jwx, with the
// claims keygate puts in its access tokens (RFC 9068). Nothing else: no
// config, no metrics, no storage, no policy.
func baselineApp(key *ecdsa.PrivateKey) (*fiber.App, error) {
	pub, err := jwk.FromRaw(key.Public())
	if err != nil {
		return nil, err
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)
	want := sha256.Sum256([]byte(clientSecret))
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Post(profilePath+"/token", func(c *fiber.Ctx) error {
		h := string(c.Request().Header.Peek(fiber.HeaderAuthorization))
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h, "Basic "))
		if err != nil {
			return fiber.ErrUnauthorized
		}
		id, sec, _ := strings.Cut(string(raw), ":")
		got := sha256.Sum256([]byte(sec))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return fiber.ErrUnauthorized
		}
		var jti [16]byte
		_, _ = rand.Read(jti[:])
		now := time.Now()
		payload, err := json.Marshal(map[string]any{
			"iss": issuer, "sub": id, "aud": audience,
			"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(),
			"jti": hex.EncodeToString(jti[:]), "client_id": id, "scope": c.FormValue("scope"),
		})
		if err != nil {
			return err
		}
		hdr := jws.NewHeaders()
		_ = hdr.Set(jws.KeyIDKey, kid)
		_ = hdr.Set(jws.TypeKey, "at+jwt")
		tok, err := jws.Sign(payload, jws.WithKey(jwa.ES256, key, jws.WithProtectedHeaders(hdr)))
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"access_token": string(tok), "token_type": "Bearer", "expires_in": 300})
	})
	return app, nil
}

// serveBaselineMain is the child: serve the baseline on 127.0.0.1:0 with
// the ES256 key in args[0] (PKCS#8 PEM), log the address as keygate does,
// and stop on SIGTERM.
func serveBaselineMain(args []string) int {
	if len(args) < 1 || len(args) > 2 {
		fmt.Fprintln(os.Stderr, "usage: keygate-bench "+serveBaselineArg+" KEY.pem [PROFILE]")
		return 2
	}
	if err := serveBaseline(args); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		return 1
	}
	return 0
}

func serveBaseline(args []string) error {
	key, err := readECKey(args[0])
	if err != nil {
		return err
	}
	app, err := baselineApp(key)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	line, _ := json.Marshal(map[string]string{"level": "INFO", "msg": "baseline serving", "public": ln.Addr().String()})
	fmt.Fprintln(os.Stderr, string(line))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		var prof profiler
		for s := range sig {
			switch s {
			case syscall.SIGUSR1:
				if len(args) == 2 {
					prof.start(args[1])
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

func readECKey(path string) (*ecdsa.PrivateKey, error) {
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
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an EC key")
	}
	return ec, nil
}

// runBaseline measures the baseline: by default in a child process (like
// keygate: its own Go runtime and GC, its CPU and RSS read from /proc);
// with -baseline-inprocess on a listener of the bench process itself.
func runBaseline(ctx context.Context, o options, s scenario, k *benchKeys) (*result, error) {
	var addr, profile string
	var srv *server
	pid := 0
	if o.baselineIn {
		app, err := baselineApp(k.es256)
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
		args := []string{serveBaselineArg, k.files["ES256"]}
		if o.cpuprofile != "" {
			profile = strings.TrimSuffix(o.cpuprofile, ".pprof") + "-baseline.pprof"
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
		return nil, fmt.Errorf("baseline address %s is not loopback", addr)
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
