package session_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/keygate/keygate/internal/session"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/testkit"
)

func newStore(t *testing.T) model.Store {
	t.Helper()
	return testkit.SQLite(t)
}

func TestLifetimes(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	u := model.User{ID: "u1", Zone: "local"}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := session.Policy{Idle: time.Hour, Absolute: 3 * time.Hour}
	cookie, s, err := session.Create(ctx, st, u, "urn:keygate:acr:password", []string{"pwd"}, p, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(cookie) != 43 || s.ID == "" || s.ID == cookie || s.Hash != model.HashSecret(cookie) {
		t.Fatalf("cookie %q, session %+v", cookie, s)
	}
	got, err := session.Lookup(ctx, st, cookie, t0.Add(59*time.Minute))
	if err != nil || got.ID != s.ID || got.UserID != "u1" || got.ACR != "urn:keygate:acr:password" || !got.AuthTime.Equal(t0) {
		t.Fatalf("lookup: %+v %v", got, err)
	}
	// Touched at 59m: alive at 1h58m, even though idle from creation would have ended it.
	if _, err := session.Lookup(ctx, st, cookie, t0.Add(118*time.Minute)); err != nil {
		t.Fatalf("after touch: %v", err)
	}
	// Idle: more than an hour since the last touch.
	if _, err := session.Lookup(ctx, st, cookie, t0.Add(179*time.Minute)); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("idle: %v", err)
	}
	// Absolute: kept alive by touches, still ends at 3h.
	cookie2, _, err := session.Create(ctx, st, u, "", nil, p, t0)
	if err != nil {
		t.Fatal(err)
	}
	for m := 50; m < 180; m += 50 {
		if _, err := session.Lookup(ctx, st, cookie2, t0.Add(time.Duration(m)*time.Minute)); err != nil {
			t.Fatalf("at %dm: %v", m, err)
		}
	}
	if _, err := session.Lookup(ctx, st, cookie2, t0.Add(180*time.Minute)); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("absolute: %v", err)
	}
	// Unknown, empty, deleted.
	for _, c := range []string{"", "nope"} {
		if _, err := session.Lookup(ctx, st, c, t0); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("lookup %q: %v", c, err)
		}
	}
	cookie3, _, _ := session.Create(ctx, st, u, "", nil, p, t0)
	if err := session.Delete(ctx, st, cookie3); err != nil {
		t.Fatal(err)
	}
	if err := session.Delete(ctx, st, cookie3); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := session.Lookup(ctx, st, cookie3, t0); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("deleted: %v", err)
	}
}

func TestCookies(t *testing.T) {
	app := fiber.New()
	app.Get("/set", func(c *fiber.Ctx) error { session.SetCookie(c, "v", time.Hour); return nil })
	app.Get("/clear", func(c *fiber.Ctx) error { session.ClearCookie(c); return nil })
	for path, want := range map[string][]string{
		"/set":   {"keygate_session=v", "max-age=3600", "path=/", "HttpOnly", "secure", "SameSite=Lax"},
		"/clear": {"keygate_session=;", "expires=Thu, 01 Jan 1970", "path=/", "HttpOnly", "secure", "SameSite=Lax"},
	} {
		resp, err := app.Test(httptest.NewRequest("GET", path, nil))
		if err != nil {
			t.Fatal(err)
		}
		sc := resp.Header.Get("Set-Cookie")
		for _, w := range want {
			if !strings.Contains(sc, w) {
				t.Errorf("%s: Set-Cookie %q lacks %q", path, sc, w)
			}
		}
	}
}
