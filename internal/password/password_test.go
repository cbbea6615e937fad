package password

import (
	"strings"
	"testing"
)

var cheap = Params{Memory: 1024, Iterations: 1, Parallelism: 1}

func TestHashVerify(t *testing.T) {
	h := Hash("correct horse", cheap)
	if !strings.HasPrefix(h, "$argon2id$v=19$m=1024,t=1,p=1$") {
		t.Fatalf("hash %q", h)
	}
	if h == Hash("correct horse", cheap) {
		t.Fatal("salt not random")
	}
	if ok, re, err := Verify("correct horse", h, cheap); !ok || re || err != nil {
		t.Fatalf("verify: %v %v %v", ok, re, err)
	}
	if ok, re, err := Verify("wrong", h, cheap); ok || re || err != nil {
		t.Fatalf("wrong: %v %v %v", ok, re, err)
	}
	// Parameters changed: ok and rehash.
	if ok, re, err := Verify("correct horse", h, Params{2048, 1, 1}); !ok || !re || err != nil {
		t.Fatalf("rehash: %v %v %v", ok, re, err)
	}
	// A known vector shape from another implementation (PHC format, default params).
	d := Hash("x", Default)
	if !strings.HasPrefix(d, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatal(d)
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=16$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$argon2id$v=19$m=1024,t=0,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$argon2id$v=19$m=1024,t=1,p=1$!!$aGFzaA"} {
		if _, _, err := Verify("x", bad, cheap); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
