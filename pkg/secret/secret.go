// Package secret holds provider API keys in memory as a type that cannot be
// printed, marshalled or logged by accident, and that is wiped after use.
package secret

import (
	"crypto/subtle"
	"fmt"
	"strings"

	"github.com/rs/zerolog"
)

const redacted = "[REDACTED]"

// Key is a plaintext provider key. Its bytes live in a private slice that
// Wipe overwrites; every way the standard library, encoding/json or zerolog
// could print it yields "[REDACTED]" instead.
type Key struct {
	b []byte
}

// New copies p into a new Key. The caller should wipe p itself if it owns it.
func New(p []byte) *Key {
	b := make([]byte, len(p))
	copy(b, p)
	return &Key{b: b}
}

// FromString copies s into a new Key. The string itself cannot be wiped, so
// this is only for keys that arrive as strings (a pasted key in a request).
func FromString(s string) *Key {
	return &Key{b: []byte(s)}
}

// Bytes returns the live plaintext. The slice is overwritten by Wipe, so
// callers must not keep it past the key's lifetime. Bytes of a nil or wiped
// Key is empty.
func (k *Key) Bytes() []byte {
	if k == nil {
		return nil
	}
	return k.b
}

// Len reports the plaintext length.
func (k *Key) Len() int { return len(k.Bytes()) }

// HasPrefix reports whether the plaintext starts with prefix, without
// copying it into a string.
func (k *Key) HasPrefix(prefix string) bool {
	b := k.Bytes()
	if len(b) < len(prefix) {
		return false
	}
	return subtle.ConstantTimeCompare(b[:len(prefix)], []byte(prefix)) == 1
}

// MatchesHint reports whether a provider's redacted value of a key
// ("sk-admin...wxyz", "sk-ant-api03-R2D…igAA", "sk-****wxyz") could be this
// key: its visible start is the key's start and its visible end, at least
// four characters, is the key's end. Providers show no more than that, so a
// match is "as sure as the redaction allows"; callers treat two matches as
// none.
func (k *Key) MatchesHint(hint string) bool {
	i := strings.IndexAny(hint, ".*…")
	if i < 0 {
		return false
	}
	prefix := hint[:i]
	suffix := strings.TrimLeft(hint[i:], ".*…")
	if len(suffix) < 4 || strings.ContainsAny(suffix, ".*…") {
		return false
	}
	b := k.Bytes()
	if len(b) <= len(prefix)+len(suffix) {
		return false
	}
	return k.HasPrefix(prefix) && subtle.ConstantTimeCompare(b[len(b)-len(suffix):], []byte(suffix)) == 1
}

// Hint returns prefix + "…" + the last four characters, the only part of a key
// Tokka ever shows. Keys too short to hide anything get no suffix at all.
func (k *Key) Hint(prefix string) string {
	b := k.Bytes()
	if len(b) < len(prefix)+12 {
		return prefix + "…"
	}
	return prefix + "…" + string(b[len(b)-4:])
}

// Wipe overwrites the plaintext with zeros and forgets it. It is safe to call
// more than once and on a nil Key.
func (k *Key) Wipe() {
	if k == nil {
		return
	}
	clear(k.b)
	k.b = nil
}

// Wiped reports whether Wipe has run (or the key was empty to begin with).
func (k *Key) Wiped() bool { return k == nil || k.b == nil }

// String implements fmt.Stringer with a redaction.
func (Key) String() string { return redacted }

// GoString implements fmt.GoStringer (the %#v verb) with a redaction.
func (Key) GoString() string { return redacted }

// Format makes every fmt verb (%s, %v, %q, %x, %d …) print the redaction.
func (Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON implements json.Marshaler with a redaction.
func (Key) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler with a redaction.
func (Key) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalZerologObject implements zerolog.LogObjectMarshaler with a redaction.
func (Key) MarshalZerologObject(e *zerolog.Event) { e.Str("key", redacted) }
