package model_test

import (
	"testing"

	"github.com/keygate/keygate/internal/storage/model"
)

func TestHashSecret(t *testing.T) {
	h := model.HashSecret("abc")
	if h.String() != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("HashSecret = %s", h)
	}
	if a, b := model.NewID(), model.NewID(); a == b || len(a) != 22 {
		t.Fatalf("NewID = %q, %q", a, b)
	}
}
