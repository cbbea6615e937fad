package password

import "testing"

// BenchmarkHashDefault is the per-login cost of the password
// authenticator on one core: one argon2id derivation at the default
// parameters (19 MiB, t=2, p=1). Verify does the same derivation, so a
// successful login spends this once (twice only when it rehashes).
//
//	go test ./internal/password -run '^$' -bench HashDefault -benchmem -cpu 1 -count 5
func BenchmarkHashDefault(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = Hash("correct horse battery staple", Default)
	}
}

// BenchmarkVerifyDefault is what the login POST runs: decode the stored
// PHC string and derive the key again at its parameters.
func BenchmarkVerifyDefault(b *testing.B) {
	enc := Hash("correct horse battery staple", Default)
	b.ReportAllocs()
	for b.Loop() {
		if ok, _, err := Verify("correct horse battery staple", enc, Default); !ok || err != nil {
			b.Fatal("verify failed", err)
		}
	}
}
