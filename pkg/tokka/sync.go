package tokka

import (
	"errors"
	"fmt"
	"time"
)

// ErrLeaseLost means the syncer no longer holds the connection's lease: it
// expired and another syncer took it, or the connection was deleted. The
// caller must stop without using the key or writing results.
var ErrLeaseLost = errors.New("postgres: lease lost")

// ErrKeyChanged means the user replaced the connection's key after it was
// leased: the leased blob is the old key and must not be opened or synced
// with. It wraps ErrLeaseLost (every caller must stop the same way) and the
// caller should release the lease so the new key is synced promptly.
var ErrKeyChanged = fmt.Errorf("%w: the key was replaced after the lease was taken", ErrLeaseLost)

// ErrDuplicate means the connection was marked duplicate while it was
// leased: an older connection of the same user covers its organisation, so
// nothing of this sync may be stored. It wraps ErrLeaseLost; the lease is
// still the caller's, to give back with AbandonSync.
var ErrDuplicate = fmt.Errorf("%w: the connection was marked duplicate", ErrLeaseLost)

// Lease is a connection a syncer holds until ExpiresAt.
type Lease struct {
	ConnectionID string     `db:"id"`
	TeamID       string     `db:"team_id"`
	Provider     Provider   `db:"provider"`
	SealedKey    string     `db:"sealed_key"`
	KeySetAt     time.Time  `db:"key_set_at"`
	BackfilledAt *time.Time `db:"backfilled_at"`
	Requested    bool       `db:"requested"`
	// Owner names this one lease: the syncer's instance name and a random
	// suffix, so a lease is never mistaken for a later one of the same
	// syncer on the same connection (after it expired and was taken again).
	Owner string `db:"lease_owner"`
	// Takeover is set when the connection was still marked as leased by a
	// syncer whose lease had expired (it crashed or stalled).
	Takeover  bool      `db:"takeover"`
	ExpiresAt time.Time `db:"lease_expires_at"`
	// OrganizationKnown is set when the provider organisation of the
	// current key has been recorded (RecordOrganization); until then the
	// sync must learn it first.
	OrganizationKnown bool `db:"organization_known"`
	// KeyUnchecked is set for a key the client sealed that no syncer has
	// opened yet: its prefix, hint and fingerprint are still to be learnt
	// (RecordSealedKey).
	KeyUnchecked bool `db:"key_unchecked"`
	// Failures counts the connection's syncs that failed in a row before
	// this one (since its last success or new key); the syncer's retry
	// backoff grows with it.
	Failures int `db:"failures"`
}

// SyncResult is what one successful sync writes.
type SyncResult struct {
	Window   Window
	Usage    []UsageRow
	Costs    []CostRow
	Backfill bool // the window was the first-connect backfill
	// Directory is the organisation's projects and keys as read in this
	// sync; nil when it could not be read (what was stored stays).
	Directory *Directory
	// Alerts are raised in the same transaction (once each: an alert whose
	// DedupKey the user already has is skipped), so a crash never loses
	// one that the stored directory would no longer reveal.
	Alerts []Alert
	Next   time.Time
	Event  AuditEvent // sync.succeeded
}

// DefaultResyncDays is how many recent days (today included) the providers
// may still restate when no one says otherwise (SYNC_RESYNC_DAYS): the
// syncer re-reads them on every sync and the api marks them provisional, so
// both binaries take this one number.
const DefaultResyncDays = 3
