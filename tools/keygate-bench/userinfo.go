package main

// The userinfo scenario measures OpenID Connect userinfo (Core 1.0 §5.3)
// over many distinct access tokens of one user, each sent again only after
// all the others (so a token's verified claims may be cached from its
// previous round, but never from the request before): before the run, a few workers each sign in once (one SSO
// session each) and then run session-only code flows (authorize with the
// session, code exchange) until -tokens distinct access tokens are
// issued; the load then sends GET {token}/userinfo with each token in
// turn as a Bearer credential. Every request verifies the token, checks
// it is not revoked and reads the user.

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

const kindUserinfo = "userinfo"

// runUserinfo is runCodeflow's node with a request load.
func runUserinfo(ctx context.Context, o options, s scenario, k *benchKeys, work string, pg *postgres) (*result, error) {
	n, err := startSignInNode(ctx, o, s, k, work, pg)
	defer n.close()
	if err != nil {
		return nil, err
	}
	tokens, err := userTokens(ctx, n.srv.public, o.tokens)
	if err != nil {
		return nil, fmt.Errorf("pre-issue user tokens: %w\n%s", err, n.srv.logTail())
	}
	authz := make([][]byte, len(tokens))
	for i, t := range tokens {
		authz[i] = []byte("Bearer " + t)
	}
	addr := n.srv.public
	l := load{
		addr: addr,
		setup: func(_ int, req *fasthttp.Request) {
			req.Header.SetMethod(fasthttp.MethodGet)
			req.SetRequestURI("http://" + addr + profilePath + "/userinfo")
		},
		authz: authz,
		want:  []byte(`{"name":"Bench User"`), // claims in key order; name comes first
	}
	w := newWindow(n.srv, n.srv.pid, n.profile)
	out := drive(ctx, l, o.concurrency, o.warmup, o.duration, w.begin, w.end)
	r, err := w.nodeResult(s, o.concurrency, out)
	if err != nil {
		return nil, err
	}
	w.reportNode(s, out)
	return r, nil
}

// userTokens issues n distinct access tokens of the bench's user: each of
// a few workers signs in once, then runs code flows on its SSO session.
// Sign-ins are one at a time: the lockout refuses concurrent password
// checks of one account.
func userTokens(ctx context.Context, addr string, n int) ([]string, error) {
	const workers = 8
	f := newFlower(addr, workers)
	defer f.hc.CloseIdleConnections()
	out := make([]string, n)
	var next atomic.Int64
	jars := make([]jar, workers)
	for w := range jars {
		jars[w] = jar{}
		i := int(next.Add(1)) - 1
		if i >= n {
			break
		}
		t, err := f.codeFlow(jars[w], true)
		if err != nil {
			return nil, err
		}
		out[i] = t
	}
	errs := make(chan error, workers)
	for _, j := range jars {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					errs <- ctx.Err()
					return
				}
				t, err := f.codeFlow(j, false)
				if err != nil {
					errs <- err
					return
				}
				out[i] = t
			}
		}()
	}
	var first error
	for range workers {
		if err := <-errs; err != nil && first == nil {
			first = err
			next.Store(int64(n)) // stop the others
		}
	}
	return out, first
}
