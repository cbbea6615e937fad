package sqlstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/storage/model"
)

// ---- access tokens ----

type accessTokens struct{ s *Store }

const insertAccessTokenSQL = `INSERT INTO access_tokens
	(hash, jti, client_id, subject, scopes, audience, profile, issued_at, expires_at, jkt)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING`

// getAccessTokenSQL joins the revocation, which is kept only there.
const getAccessTokenSQL = `SELECT a.hash, a.jti, a.client_id, a.subject, a.scopes, a.audience, a.profile,
	a.issued_at, a.expires_at, r.revoked_at, a.jkt
	FROM access_tokens a LEFT JOIN revoked_tokens r ON r.jti = a.jti WHERE a.hash = $1`

// tokenBatch bounds one group commit.
const tokenBatch = 128

// Create queues t for the next group commit (see batch).
func (a accessTokens) Create(ctx context.Context, t model.AccessToken) error {
	if err := t.Validate(); err != nil {
		return err
	}
	return a.s.failed("create access token", a.s.tokens.Do(ctx, t))
}

// insertAccessTokens writes a batch in one commit. A duplicate hash
// inserts nothing (ON CONFLICT DO NOTHING), so it fails only its own item;
// any other error fails every item.
func (s *Store) insertAccessTokens(ctx context.Context, toks []model.AccessToken) []error {
	args := make([][]any, len(toks))
	for i, t := range toks {
		args[i] = []any{t.Hash[:], t.JTI, t.ClientID, t.Subject, s.d.List(t.Scopes), s.d.List(t.Audience),
			t.Profile, s.d.Time(t.IssuedAt), s.d.Time(t.ExpiresAt), t.JKT}
	}
	changed, err := s.db.ExecBatch(ctx, insertAccessTokenSQL, args)
	errs := make([]error, len(toks))
	for i := range errs {
		if err != nil {
			errs[i] = err
		} else if changed[i] == 0 {
			errs[i] = model.ErrConflict
		}
	}
	return errs
}

func (a accessTokens) Get(ctx context.Context, hash model.Hash) (model.AccessToken, error) {
	var t model.AccessToken
	d := a.s.d
	err := scan(a.s.r.QueryRow(ctx, getAccessTokenSQL, hash[:]), (*hashCol)(&t.Hash), &t.JTI, &t.ClientID,
		&t.Subject, d.ScanList(&t.Scopes), d.ScanList(&t.Audience), &t.Profile,
		d.ScanTime(&t.IssuedAt), d.ScanTime(&t.ExpiresAt), d.ScanTime(&t.RevokedAt), &t.JKT)
	return t, found("access token", err)
}

// ---- revocations ----

type revocations struct{ s *Store }

func (r revocations) Revoke(ctx context.Context, jti string, expiresAt time.Time) error {
	if jti == "" || expiresAt.IsZero() {
		return errors.New("revoke: jti and expiry are required")
	}
	_, err := r.s.w.Exec(ctx, `INSERT INTO revoked_tokens (jti, revoked_at, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (jti) DO UPDATE SET expires_at = CASE WHEN excluded.expires_at > revoked_tokens.expires_at
			THEN excluded.expires_at ELSE revoked_tokens.expires_at END`,
		jti, r.s.d.Time(time.Now()), r.s.d.Time(expiresAt))
	return r.s.failed("revoke", err)
}

func (r revocations) IsRevoked(ctx context.Context, ids ...string) (bool, error) {
	if len(ids) == 0 {
		return false, nil
	}
	params, args := make([]string, len(ids)), make([]any, len(ids))
	for i, id := range ids {
		params[i], args[i] = "$"+strconv.Itoa(i+1), id
	}
	var revoked bool
	err := r.s.r.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti IN (`+
		strings.Join(params, ", ")+`))`, args...).Scan(&revoked)
	if err != nil {
		return false, fmt.Errorf("is revoked: %w", err)
	}
	return revoked, nil
}

// ---- assertions ----

type assertions struct{ s *Store }

func (a assertions) Use(ctx context.Context, clientID, jti string, expiresAt time.Time) error {
	if clientID == "" || jti == "" || expiresAt.IsZero() {
		return errors.New("use assertion: client id, jti and expiry are required")
	}
	n, err := a.s.w.Exec(ctx, `INSERT INTO used_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, clientID, jti, a.s.d.Time(expiresAt))
	if err != nil {
		return fmt.Errorf("use assertion: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("assertion jti: %w", model.ErrReplay)
	}
	return nil
}

// ---- DPoP proofs ----

type dpopProofs struct{ s *Store }

// usedProof is a DPoP proof id to record.
type usedProof struct {
	jkt, jti  string
	expiresAt time.Time
}

// Use is one insert on the (jkt, jti) key: of two nodes racing with one
// proof, the database lets one row in and the other inserts nothing. The
// inserts of concurrent requests share a commit (s.proofs).
func (p dpopProofs) Use(ctx context.Context, jkt, jti string, expiresAt time.Time) error {
	if jkt == "" || jti == "" || expiresAt.IsZero() {
		return errors.New("use dpop proof: jkt, jti and expiry are required")
	}
	switch err := p.s.proofs.Do(ctx, usedProof{jkt, jti, expiresAt}); {
	case errors.Is(err, model.ErrReplay):
		return fmt.Errorf("dpop proof jti: %w", err)
	case err != nil:
		return fmt.Errorf("use dpop proof: %w", err)
	}
	return nil
}

// insertProofs records a batch of proof ids in one transaction; a row the
// key already holds (another node's batch) inserts nothing, which is that
// proof's replay. The rows go in key order, so two batches that share keys
// lock them in the same order and never deadlock; a key twice in the batch
// is a replay found here, without a row for it.
func (s *Store) insertProofs(ctx context.Context, proofs []usedProof) []error {
	errs := make([]error, len(proofs))
	order := make([]int, len(proofs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(strings.Compare(proofs[a].jkt, proofs[b].jkt), strings.Compare(proofs[a].jti, proofs[b].jti))
	})
	var args [][]any
	var sent []int // index in proofs of each row of args
	for k, i := range order {
		if k > 0 && proofs[order[k-1]].jkt == proofs[i].jkt && proofs[order[k-1]].jti == proofs[i].jti {
			errs[i] = model.ErrReplay
			continue
		}
		args = append(args, []any{proofs[i].jkt, proofs[i].jti, s.d.Time(proofs[i].expiresAt)})
		sent = append(sent, i)
	}
	changed, err := s.db.ExecBatch(ctx, `INSERT INTO dpop_proofs (jkt, jti, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, args)
	for row, i := range sent {
		if err != nil {
			errs[i] = err
		} else if changed[row] == 0 {
			errs[i] = model.ErrReplay
		}
	}
	return errs
}
