package main

import (
	"context"
	"io"
	"sync"
	"time"
)

// bufferedWriter batches log lines and writes them when the buffer fills
// and at least every flush interval, like nginx's access_log buffer=
// flush=. One write(2) per request is a measurable share of a proxied
// request's CPU; one per batch is not. A crash loses at most one interval of
// access-log lines; events and errors do not go through here.
//
// It is safe for concurrent use. Writes are copied into the buffer under mu;
// the file write happens outside mu, under flushMu, so a slow disk delays
// other flushes but never a request that only appends.
type bufferedWriter struct {
	out  io.Writer
	size int

	// mu guards buf.
	mu  sync.Mutex
	buf []byte

	// flushMu serialises writes to out and guards spare, the buffer not in
	// use, swapped with buf on each flush so neither is reallocated.
	flushMu sync.Mutex
	spare   []byte
}

func newBufferedWriter(out io.Writer, size int) *bufferedWriter {
	return &bufferedWriter{out: out, size: size, buf: make([]byte, 0, size), spare: make([]byte, 0, size)}
}

// Write appends p to the buffer, flushing first if p would not fit.
func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	if len(b.buf)+len(p) > b.size && len(b.buf) > 0 {
		b.mu.Unlock()
		if err := b.Flush(); err != nil {
			return 0, err
		}
		b.mu.Lock()
	}
	b.buf = append(b.buf, p...)
	b.mu.Unlock()
	return len(p), nil
}

// Flush writes out whatever is buffered.
func (b *bufferedWriter) Flush() error {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.mu.Lock()
	full := b.buf
	b.buf = b.spare[:0]
	b.mu.Unlock()
	if len(full) == 0 {
		b.spare = full
		return nil
	}
	_, err := b.out.Write(full)
	b.spare = full[:0]
	return err
}

// Run flushes every interval until ctx ends, then flushes once more and
// returns nil.
func (b *bufferedWriter) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			b.Flush()
			return nil
		case <-t.C:
			b.Flush()
		}
	}
}
