// Package logtest holds what tests need to read what a logger (or a child
// process) wrote while it is still writing.
package logtest

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer is an io.Writer that a logger running on other goroutines and the
// test reading it can share: every method takes one lock, so a read never
// sees half a write. The zero Buffer is empty and ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p; it never fails.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Lines returns what was written so far split into lines, without the
// trailing newline; nil when nothing was written.
func (l *Buffer) Lines() []string {
	s := strings.TrimSpace(l.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
