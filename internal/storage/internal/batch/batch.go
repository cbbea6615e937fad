// Package batch coalesces concurrent writes into one transaction: a
// commit costs a WAL flush (an fsync on PostgreSQL), so committing the
// tokens that 64 concurrent requests issue together costs one flush, not
// 64. Batches form naturally: a worker takes every call that queued while
// it was busy, so an idle store adds no delay.
package batch

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("storage: closed")

// Func writes items and returns one error per item (nil: written). It
// runs on a worker goroutine; its context outlives every caller's.
type Func[T any] func(ctx context.Context, items []T) []error

// Batcher runs Func over batches of concurrent Do calls.
type Batcher[T any] struct {
	ch     chan call[T] // unbuffered: a call is either taken by a worker or not
	run    Func[T]
	max    int
	done   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

type call[T any] struct {
	item T
	res  chan error // buffered: the worker never blocks on a caller that gave up
}

// New starts workers goroutines that run at most max items per batch.
func New[T any](workers, max int, run Func[T]) *Batcher[T] {
	ctx, cancel := context.WithCancel(context.Background())
	b := &Batcher[T]{ch: make(chan call[T]), run: run, max: max, done: make(chan struct{}), cancel: cancel}
	for range workers {
		b.wg.Add(1)
		go b.work(ctx)
	}
	return b
}

// Do writes item in the next batch and returns its error. If ctx ends
// first, Do returns ctx.Err() and the item may still be written.
func (b *Batcher[T]) Do(ctx context.Context, item T) error {
	c := call[T]{item: item, res: make(chan error, 1)}
	select {
	case b.ch <- c:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.done:
		return ErrClosed
	}
	select {
	case err := <-c.res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Batcher[T]) work(ctx context.Context) {
	defer b.wg.Done()
	calls := make([]call[T], 0, b.max)
	items := make([]T, 0, b.max)
	for {
		calls, items = calls[:0], items[:0]
		select {
		case c := <-b.ch:
			calls, items = append(calls, c), append(items, c.item)
		case <-b.done:
			return
		}
	drain:
		for len(calls) < b.max {
			select {
			case c := <-b.ch:
				calls, items = append(calls, c), append(items, c.item)
			default:
				break drain
			}
		}
		errs := b.run(ctx, items)
		for i, c := range calls {
			c.res <- errs[i]
		}
	}
}

// Close stops the workers once their current batch is written. Idempotent.
func (b *Batcher[T]) Close() {
	b.once.Do(func() {
		close(b.done)
		b.wg.Wait()
		b.cancel()
	})
}
