// Package password hashes and verifies passwords with argon2id (RFC 9106),
// stored in the PHC string format:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt, base64 no padding>$<hash, base64 no padding>
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/keygate/keygate/internal/config"
)

// Params is the argon2id cost. Memory is in KiB.
type Params struct {
	Memory      uint32
	Iterations  uint32
	Parallelism uint8
}

// Lengths of new hashes: a 128-bit salt and a 256-bit key (RFC 9106 §4).
const (
	saltLen = 16
	keyLen  = 32
)

// Default is OWASP's minimum for argon2id, the config defaults.
var Default = Params{Memory: config.DefaultArgon2MemoryKiB, Iterations: config.DefaultArgon2Iterations, Parallelism: config.DefaultArgon2Parallelism}

// FromConfig converts an authenticator's (validated) argon2 settings;
// zero fields take the defaults.
func FromConfig(a config.Argon2Params) Params {
	p := Default
	if a.MemoryKiB > 0 {
		p.Memory = uint32(a.MemoryKiB)
	}
	if a.Iterations > 0 {
		p.Iterations = uint32(a.Iterations)
	}
	if a.Parallelism > 0 && a.Parallelism < 256 {
		p.Parallelism = uint8(a.Parallelism)
	}
	return p
}

// ErrMalformed: the stored hash is not an argon2id PHC string this package reads.
var ErrMalformed = errors.New("password: malformed argon2id hash")

// Hash returns the PHC string of pw with a fresh random salt.
func Hash(pw string, p Params) string {
	salt := make([]byte, saltLen)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails (Go 1.24+)
	key := argon2.IDKey([]byte(pw), salt, p.Iterations, p.Memory, p.Parallelism, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Iterations, p.Parallelism,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

// Verify reports whether pw matches the PHC string encoded, comparing in
// constant time, and whether the hash should be replaced because it was
// made with parameters other than want. A malformed hash is an error.
func Verify(pw, encoded string, want Params) (ok, rehash bool, err error) {
	p, salt, key, err := decode(encoded)
	if err != nil {
		return false, false, err
	}
	got := argon2.IDKey([]byte(pw), salt, p.Iterations, p.Memory, p.Parallelism, uint32(len(key)))
	ok = subtle.ConstantTimeCompare(got, key) == 1
	return ok, ok && (p != want || len(salt) != saltLen || len(key) != keyLen), nil
}

func decode(s string) (p Params, salt, key []byte, err error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, ErrMalformed
	}
	for _, kv := range strings.Split(f[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, perr := strconv.ParseUint(v, 10, 32)
		if perr != nil || n == 0 {
			return p, nil, nil, ErrMalformed
		}
		switch k {
		case "m":
			p.Memory = uint32(n)
		case "t":
			p.Iterations = uint32(n)
		case "p":
			if n > 255 {
				return p, nil, nil, ErrMalformed
			}
			p.Parallelism = uint8(n)
		default:
			return p, nil, nil, ErrMalformed
		}
	}
	if p.Memory == 0 || p.Iterations == 0 || p.Parallelism == 0 || p.Memory > 4<<20 || p.Iterations > 1000 {
		return p, nil, nil, ErrMalformed // also bounds the work a tampered row can cause
	}
	b64 := base64.RawStdEncoding
	if salt, err = b64.DecodeString(f[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, ErrMalformed
	}
	if key, err = b64.DecodeString(f[5]); err != nil || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, ErrMalformed
	}
	return p, salt, key, nil
}

// ForRole is the argon2id cost of new hashes for a role's users: that of
// its first authentication profile's password authenticator (by name),
// else the defaults, so that every way a password is set (keygate user
// add, SCIM) hashes it as the login expects.
func ForRole(snap *config.Snapshot, sr *config.ServiceRole) Params {
	if sr == nil {
		return Default
	}
	for _, name := range sr.Profiles {
		p := snap.Profiles[name]
		if p == nil || p.Type != config.ProfileAuthentication {
			continue
		}
		for _, an := range slices.Sorted(maps.Keys(p.Authenticators)) {
			if a := p.Authenticators[an]; a.Type == "password" {
				return FromConfig(a.Argon2)
			}
		}
	}
	return Default
}
