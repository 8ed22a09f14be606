package tokka

import (
	"errors"
	"time"
)

// NewConnection is what the api stores when a user pastes a key: the blob is
// already sealed to the syncer's public key and bound to ID, TeamID and Provider.
type NewConnection struct {
	ID        string
	Provider  Provider
	Label     string
	KeyHint   string
	SealedKey string
	// KeyFingerprint is the key's keyed fingerprint for this user
	// (secret.Fingerprinter.Key); nil stores none.
	KeyFingerprint []byte
}

// ConnectionUpdate is a user's change to a connection: a new label, a new
// key, or both. A new key arrives already sealed to the syncer's public key
// and bound to the same user, connection and provider.
type ConnectionUpdate struct {
	Label          *string // nil keeps the label
	KeyHint        string  // with SealedKey
	SealedKey      string  // "" keeps the key
	KeyFingerprint []byte  // with SealedKey: the new key's fingerprint
}

// ErrBlobChanged means a connection's sealed key is no longer the value the
// caller read (the user replaced the key, another rewrap got there first) or
// the connection is gone. Nothing was written; the caller re-reads or moves on.
var ErrBlobChanged = errors.New("postgres: the sealed key changed or the connection was deleted meanwhile")

// SealedKey is one connection's stored blob with the binding it was sealed
// for, as the rewrap pass reads it.
type SealedKey struct {
	ConnectionID string   `db:"id"`
	TeamID       string   `db:"team_id"`
	Provider     Provider `db:"provider"`
	Status       string   `db:"status"`
	Blob         string   `db:"sealed_key"`
}

// CreatedKey is where a page of a list ordered by (created_at, id) starts:
// after the row with these values. Keyset paging keeps its place while rows
// are added or deleted between pages.
type CreatedKey struct {
	CreatedAt time.Time
	ID        string
}

// IdempotentResponse is the first (successful) response to a request sent
// with an Idempotency-Key, kept to answer the request's retries.
type IdempotentResponse struct {
	Status      int
	Location    string
	ContentType string
	Body        []byte
}
