// Package syncbuf is a bytes.Buffer that one writer (a process, a logger) and
// concurrent readers (a test waiting for a line) may share. It is a leaf: tests
// under pkg/, test/ and bench/ import it without importing anything else.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer safe for a writer and concurrent readers. The zero
// value is empty and ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
