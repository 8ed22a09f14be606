// Package tokka holds the domain types every other package speaks: users,
// connections, audit events, and the one error vocabulary that the HTTP layer
// turns into status codes.
package tokka

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Code is the kind of a domain error; httpapi maps each to one HTTP status.
type Code string

// The error codes, shared by storage, sync and HTTP.
const (
	CodeInvalid      Code = "invalid"
	CodeNotFound     Code = "not_found"
	CodeConflict     Code = "conflict"
	CodeUnauthorized Code = "unauthorized"
	CodeForbidden    Code = "forbidden"
	CodeRateLimited  Code = "rate_limited"
	CodeUnavailable  Code = "unavailable"
	CodeTooLarge     Code = "too_large"
	CodeInternal     Code = "internal"
	// CodeUnprocessable is a well-formed request that contradicts an earlier
	// one (an Idempotency-Key reused with another request).
	CodeUnprocessable Code = "unprocessable"
	// CodeUnsupportedMediaType is a request body in a media type the route
	// does not take.
	CodeUnsupportedMediaType Code = "unsupported_media_type"
	// CodeNotAcceptable is a request whose Accept header allows none of the
	// media types the route answers in.
	CodeNotAcceptable Code = "not_acceptable"
	// CodeSyncCooldown is a "sync now" for a connection that was asked to
	// sync too recently; unlike CodeRateLimited it is about the connection,
	// not the caller's budget.
	CodeSyncCooldown Code = "sync_cooldown"
)

// Error is a domain error whose Message is safe to show to the caller.
type Error struct {
	Code    Code
	Message string
	// Field names the offending request field for CodeInvalid, when there is one.
	Field string
	// ConnectionID is, for a CodeConflict about another connection (the key
	// or organisation is already connected), that connection's id.
	ConnectionID string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf builds an *Error with a formatted, caller-safe message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the Code of the first *Error in err's chain, or
// CodeInternal for anything else (including nil-free unknown errors).
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrNotFound is returned when a row does not exist or is not the caller's;
// the two are deliberately indistinguishable.
var ErrNotFound = &Error{Code: CodeNotFound, Message: "not found"}

// User is the verified caller of an API request.
type User struct {
	ID    string // the token's sub, a UUID
	Email string
	// Claims is the verified token payload, handed to Postgres as
	// request.jwt.claims so RLS sees exactly what Supabase's PostgREST would.
	Claims json.RawMessage
	// SessionID is the token's session_id claim, when present.
	SessionID string
	// EmailVerified is the token's user_metadata.email_verified claim: what
	// the Auth server said about Email when it issued the token.
	EmailVerified bool
	// Team is the team the request acts in ("" for the user's personal
	// team, whose id is ID), and Role the caller's role in it ("" until
	// the api has looked it up). The database checks both again: they
	// only save a request that would be refused a trip.
	Team string
	Role Role
}

// TeamID is the id of the team u acts in: Team, or for the personal team
// the user's own id.
func (u User) TeamID() string {
	if u.Team != "" {
		return u.Team
	}
	return u.ID
}

// ConnectionStatus is where a connection stands: whether its key is used,
// and why not.
type ConnectionStatus string

// Connection statuses.
const (
	StatusPending        ConnectionStatus = "pending"
	StatusActive         ConnectionStatus = "active"
	StatusInvalid        ConnectionStatus = "invalid"
	StatusError          ConnectionStatus = "error"
	StatusNeedsReconnect ConnectionStatus = "needs_reconnect"
	// StatusCompromised is set by `syncer incident quarantine`: the stored
	// key may have been exposed, so it is never used again; the user leaves
	// the state by pasting a new key or deleting the connection.
	StatusCompromised ConnectionStatus = "compromised"
	// StatusDuplicate is set by the syncer when another, older connection
	// of the same user and provider covers the same provider organisation:
	// the duplicate's usage is never stored (its organisation would count
	// twice) and it is not synced again until its key is replaced.
	StatusDuplicate ConnectionStatus = "duplicate"
)

// Connection is a provider organisation a user connected, as the API shows
// it. It has no field for the key or the sealed blob, on purpose.
type Connection struct {
	ID           string           `db:"id" json:"id"`
	Provider     Provider         `db:"provider" json:"provider"`
	Label        string           `db:"label" json:"label"`
	KeyHint      string           `db:"key_hint" json:"key_hint"`
	KeySetAt     time.Time        `db:"key_set_at" json:"key_set_at"`
	Status       ConnectionStatus `db:"status" json:"status"`
	LastError    *string          `db:"last_error" json:"last_error"`
	LastSyncedAt *time.Time       `db:"last_synced_at" json:"last_synced_at"`
	NextSyncAt   *time.Time       `db:"next_sync_at" json:"next_sync_at"`
	CreatedAt    time.Time        `db:"created_at" json:"created_at"`
	UpdatedAt    time.Time        `db:"updated_at" json:"updated_at"`
	// DirectoryUnavailable lists the directory parts (projects, keys…)
	// the key was refused at its last sync: their names are unknown, and
	// the sync still succeeded.
	DirectoryUnavailable DirectoryParts `db:"directory_unavailable" json:"directory_unavailable"`
}

// Audit actions.
const (
	ActionKeyCreated    = "key.created"
	ActionKeyReplaced   = "key.replaced"
	ActionKeyDeleted    = "key.deleted"
	ActionKeyDecrypted  = "key.decrypted"
	ActionKeyRewrapped  = "key.rewrapped"
	ActionSyncSucceeded = "sync.succeeded"
	ActionSyncFailed    = "sync.failed"
	ActionSyncRequested = "sync.requested"
	// ActionConnectionRenamed records a label change that left the key alone.
	ActionConnectionRenamed = "connection.renamed"
	// ActionIncidentQuarantined and ActionIncidentNotified record the breach
	// response (`syncer incident`): a connection set to compromised, and its
	// owner sent the breach notification.
	ActionIncidentQuarantined = "incident.quarantined"
	ActionIncidentNotified    = "incident.notified"
	// ActionIncidentReleased records an operator undoing a mistaken
	// quarantine (`syncer incident release`): the connection went back to
	// pending and its stored key is used again. Written by the syncer role.
	ActionIncidentReleased = "incident.released"
)

// Audit outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// AuditEvent is one entry of a team's audit log.
type AuditEvent struct {
	ID           int64     `db:"id" json:"id"`
	TeamID       string    `db:"team_id" json:"-"`
	ConnectionID *string   `db:"connection_id" json:"connection_id"`
	Provider     string    `db:"provider" json:"provider"`
	Action       string    `db:"action" json:"action"`
	Outcome      string    `db:"outcome" json:"outcome"`
	Purpose      string    `db:"purpose" json:"purpose"`
	Actor        string    `db:"actor" json:"actor"`
	ClientIP     string    `db:"client_ip" json:"client_ip"`
	UserAgent    string    `db:"user_agent" json:"user_agent"`
	Detail       string    `db:"detail" json:"detail"`
	CreatedAt    time.Time `db:"created_at" json:"created_at"`
	// ActorUserID is the user whose request it was (the database sets it
	// from the verified claims), nil for the syncer's events and for events
	// from before teams.
	ActorUserID *string `db:"actor_user_id" json:"actor_user_id"`
	// PrevHash is the Hash of the team's previous event (nil for the first)
	// and Hash the SHA-256 of this event's canonical content including
	// PrevHash: together they chain each user's events, so an edited,
	// removed or inserted event is detectable. Both are set by storage.
	PrevHash Hash `db:"prev_hash" json:"prev_hash"`
	Hash     Hash `db:"hash" json:"hash"`
}

// Hash is a SHA-256 digest that prints as lowercase hex (JSON null when
// empty) and scans from a Postgres bytea.
type Hash []byte

// MarshalJSON writes the hex form, or null for an empty hash. It never fails.
func (h Hash) MarshalJSON() ([]byte, error) {
	if len(h) == 0 {
		return []byte("null"), nil
	}
	return []byte(`"` + hex.EncodeToString(h) + `"`), nil
}

// String returns the lowercase hex form ("" when empty).
func (h Hash) String() string { return hex.EncodeToString(h) }

// Scan implements sql.Scanner for bytea (NULL gives an empty Hash). It fails
// for any other column type.
func (h *Hash) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*h = nil
	case []byte:
		*h = append(Hash(nil), v...)
	default:
		return fmt.Errorf("tokka: cannot scan %T into a Hash", src)
	}
	return nil
}

// AuditVerification is the result of checking one user's audit hash chain.
type AuditVerification struct {
	// Intact is true when every event's hash matches its content and links
	// to the event before it.
	Intact bool `json:"intact"`
	// Events is how many events the user's chain has: those verified by
	// earlier checks (up to the checkpoint) plus those this check read.
	Events int64 `json:"events"`
	// Checked is how many events this check read: all of them for a full
	// check, otherwise those after the checkpoint.
	Checked int64 `json:"checked"`
	// FirstBrokenID is the id of the first event that fails, when one does.
	FirstBrokenID *int64 `json:"first_broken_id"`
	// Problem says how that event fails, in words safe to show.
	Problem *string `json:"problem"`
	// HeadHash is the newest event's hash when the chain is intact: a value a
	// user can note down elsewhere, so that a later truncation of the log
	// (which a chain alone cannot reveal) shows as a different head.
	HeadHash Hash `json:"head_hash"`
}

// Alert kinds.
const (
	AlertBudgetThreshold = "budget_threshold"
	AlertBudgetForecast  = "budget_forecast"
	AlertSpendAnomaly    = "spend_anomaly"
	AlertKeyAccess       = "key_access"
	AlertKeyRotation     = "key_rotation"
	// AlertDuplicateConnection tells the owner that a connection was marked
	// duplicate and which connection already covers its organisation.
	AlertDuplicateConnection = "duplicate_connection"
)

// Alert is something Tokka wants the user to notice. DedupKey makes raising
// idempotent: the same (user, DedupKey) is stored once.
type Alert struct {
	ID             int64           `db:"id" json:"id"`
	TeamID         string          `db:"team_id" json:"-"`
	Kind           string          `db:"kind" json:"kind"`
	Severity       string          `db:"severity" json:"severity"`
	ConnectionID   *string         `db:"connection_id" json:"connection_id"`
	DedupKey       string          `db:"dedup_key" json:"-"`
	Title          string          `db:"title" json:"title"`
	Detail         json.RawMessage `db:"detail" json:"detail"`
	CreatedAt      time.Time       `db:"created_at" json:"created_at"`
	AcknowledgedAt *time.Time      `db:"acknowledged_at" json:"acknowledged_at"`
}

// ErrUnavailable means the database could not be reached or went away
// (connection refused or reset, a server shutting down or starting up):
// nothing is wrong with the request, and trying again shortly will work
// once the database is back. The HTTP layer answers 503 with its message.
var ErrUnavailable = &Error{Code: CodeUnavailable, Message: "the database is unavailable; try again shortly"}
