package tokka

import "time"

// AffectedConnection is a connection whose stored key an incident may have
// exposed: it existed (its blob was in the database) at some point of the
// incident's window, or its key was decrypted during it. Deleted connections
// are found through their audit events, which outlive them.
type AffectedConnection struct {
	ConnectionID string   `db:"connection_id"`
	TeamID       string   `db:"team_id"`
	Provider     Provider `db:"provider"`
	// Present is false for a connection deleted since; Label, KeyHint,
	// Status and KeySetAt are then nil.
	Present  bool       `db:"present"`
	Label    *string    `db:"label"`
	KeyHint  *string    `db:"key_hint"`
	Status   *string    `db:"status"`
	KeySetAt *time.Time `db:"key_set_at"`
	// FirstSeen is when the connection was created (or its first audit
	// event, for a deleted one); DeletedAt when it was deleted, if it was.
	FirstSeen time.Time  `db:"first_seen"`
	DeletedAt *time.Time `db:"deleted_at"`
	// Decryptions counts the successful key.decrypted and key.rewrapped
	// events inside the window: times the plaintext was in a syncer's memory.
	Decryptions int `db:"decryptions"`
}

// Quarantine is what `syncer incident quarantine` does to one affected
// connection.
type Quarantine struct {
	Ref    string    // the incident's reference, in every audit detail and alert
	To     time.Time // the window's end: keys set later were never exposed
	Actor  string    // syncer:<instance>
	Reason string    // the connection's last_error, shown to the user
	Alert  Alert
}

// Quarantine outcomes.
const (
	QuarantineDone        = "quarantined"      // status set to compromised now
	QuarantineKeyReplaced = "key_replaced"     // the key stored now was set after the window
	QuarantineDeleted     = "deleted"          // the connection no longer exists
	QuarantineAlready     = "already_recorded" // this incident already handled it
)

// Released is a connection an incident's quarantine set to compromised.
type Released struct {
	ConnectionID string   `db:"connection_id"`
	TeamID       string   `db:"team_id"`
	Provider     Provider `db:"provider"`
}

// Release outcomes.
const (
	ReleaseDone           = "released"          // back to pending now
	ReleaseAlready        = "already_released"  // this incident's release already ran for it
	ReleaseNotCompromised = "not_compromised"   // no longer compromised (its user pasted a new key): nothing to undo
	ReleaseStillHeld      = "still_quarantined" // released for this incident, but another one's quarantine still holds it
	ReleaseDeleted        = "deleted"           // the connection no longer exists
)

// CurrentKeyExposed reports whether the key stored now is one that was held
// during the window (it was set at or before the window's end). A
// connection whose key was replaced after the window holds a key the
// incident never saw; only its old key needs revoking.
func (a AffectedConnection) CurrentKeyExposed(to time.Time) bool {
	return a.Present && a.KeySetAt != nil && !a.KeySetAt.After(to)
}
