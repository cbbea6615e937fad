package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// TestEachCallGetsItsOwnResult: items are written once each, and a
// per-item error reaches only its caller.
func TestEachCallGetsItsOwnResult(t *testing.T) {
	var mu sync.Mutex
	seen := map[int]int{}
	var batches atomic.Int64
	b := New(2, 8, func(_ context.Context, items []int) []error {
		batches.Add(1)
		errs := make([]error, len(items))
		mu.Lock()
		defer mu.Unlock()
		for i, it := range items {
			seen[it]++
			if it%3 == 0 {
				errs[i] = fmt.Errorf("item %d", it)
			}
		}
		return errs
	})
	defer b.Close()
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := b.Do(t.Context(), i)
			if want := i%3 == 0; (err != nil) != want || (want && err.Error() != fmt.Sprintf("item %d", i)) {
				t.Errorf("Do(%d) = %v", i, err)
			}
		}()
	}
	wg.Wait()
	for i := range n {
		if seen[i] != 1 {
			t.Errorf("item %d written %d times", i, seen[i])
		}
	}
	t.Logf("%d items in %d batches", n, batches.Load())
}

func TestClose(t *testing.T) {
	b := New(1, 4, func(_ context.Context, items []int) []error { return make([]error, len(items)) })
	if err := b.Do(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b.Close()
	if err := b.Do(t.Context(), 2); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close = %v, want ErrClosed", err)
	}
}

// TestCallerGivesUp: a caller whose context ends returns at once, and the
// worker is not blocked by it.
func TestCallerGivesUp(t *testing.T) {
	release := make(chan struct{})
	b := New(1, 4, func(_ context.Context, items []int) []error {
		<-release
		return make([]error, len(items))
	})
	defer b.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Do(ctx, 1) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v, want context.Canceled", err)
	}
	close(release)
	if err := b.Do(t.Context(), 2); err != nil {
		t.Fatalf("Do after an abandoned call = %v", err)
	}
}
