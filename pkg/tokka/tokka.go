// Package tokka holds the domain types every other package speaks: users,
// connections, audit events, and the one error vocabulary that the HTTP layer
// turns into status codes.
package tokka

import (
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
)

// Error is a domain error whose Message is safe to show to the caller.
type Error struct {
	Code    Code
	Message string
	// Field names the offending request field for CodeInvalid, when there is one.
	Field string
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
}

// Connection statuses.
const (
	StatusPending        = "pending"
	StatusActive         = "active"
	StatusInvalid        = "invalid"
	StatusError          = "error"
	StatusNeedsReconnect = "needs_reconnect"
)

// Connection is a provider organisation a user connected, as the API shows
// it. It has no field for the key or the sealed blob, on purpose.
type Connection struct {
	ID           string     `db:"id" json:"id"`
	Provider     string     `db:"provider" json:"provider"`
	Label        string     `db:"label" json:"label"`
	KeyHint      string     `db:"key_hint" json:"key_hint"`
	KeySetAt     time.Time  `db:"key_set_at" json:"key_set_at"`
	Status       string     `db:"status" json:"status"`
	LastError    *string    `db:"last_error" json:"last_error"`
	LastSyncedAt *time.Time `db:"last_synced_at" json:"last_synced_at"`
	NextSyncAt   *time.Time `db:"next_sync_at" json:"next_sync_at"`
	CreatedAt    time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt    time.Time  `db:"updated_at" json:"updated_at"`
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
)

// Audit outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// AuditEvent is one entry of a user's audit log.
type AuditEvent struct {
	ID           int64     `db:"id" json:"id"`
	UserID       string    `db:"user_id" json:"-"`
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
}

// Alert kinds.
const (
	AlertBudgetThreshold = "budget_threshold"
	AlertBudgetForecast  = "budget_forecast"
	AlertSpendAnomaly    = "spend_anomaly"
	AlertKeyAccess       = "key_access"
	AlertKeyRotation     = "key_rotation"
)

// Alert is something Tokka wants the user to notice. DedupKey makes raising
// idempotent: the same (user, DedupKey) is stored once.
type Alert struct {
	ID             int64           `db:"id" json:"id"`
	UserID         string          `db:"user_id" json:"-"`
	Kind           string          `db:"kind" json:"kind"`
	Severity       string          `db:"severity" json:"severity"`
	ConnectionID   *string         `db:"connection_id" json:"connection_id"`
	DedupKey       string          `db:"dedup_key" json:"-"`
	Title          string          `db:"title" json:"title"`
	Detail         json.RawMessage `db:"detail" json:"detail"`
	CreatedAt      time.Time       `db:"created_at" json:"created_at"`
	AcknowledgedAt *time.Time      `db:"acknowledged_at" json:"acknowledged_at"`
}
