// Package provider is the contract between the syncer and the provider
// clients (packages openai and anthropic): the normalised rows a sync stores,
// the window it asks for, and the errors a client may return.
package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Client fetches one organisation's identity, usage, costs and directory. The key is
// only borrowed: a client must not keep it, log it or put it in an error.
type Client interface {
	Organization(ctx context.Context, key *secret.Key) (tokka.Organization, error)
	Usage(ctx context.Context, key *secret.Key, w tokka.Window) ([]tokka.UsageRow, error)
	Costs(ctx context.Context, key *secret.Key, w tokka.Window) ([]tokka.CostRow, error)
	// Directory lists the organisation's projects (or workspaces) and
	// keys. A part the key is refused (401/403) is listed in
	// Directory.Unavailable instead of failing the call.
	Directory(ctx context.Context, key *secret.Key) (tokka.Directory, error)
}

// Kind classifies a provider failure by what the syncer should do about it.
type Kind string

// The kinds of provider failure.
const (
	KindAuth        Kind = "auth"         // 401/403: the key is wrong, revoked or not an admin key; never retried
	KindRateLimited Kind = "rate_limited" // 429 after the allowed retries
	KindUnavailable Kind = "unavailable"  // 5xx, 529, timeouts after the allowed retries
	KindBadResponse Kind = "bad_response" // malformed JSON, absurd values, endless paging, oversize bodies
	KindRequest     Kind = "request"      // 4xx other than the above: our request was wrong
)

// Error is a provider failure. Reason is written for the user and is safe to
// store and show: it never contains the provider's raw error text (which can
// echo part of the key) nor the key itself.
type Error struct {
	Provider  tokka.Provider
	Kind      Kind
	Status    int    // HTTP status, 0 when there was no response
	Reason    string // user-facing, key-free
	RequestID string // provider's request id, when it sent one
	// RetryAfter is how long the provider asked us to wait (Retry-After)
	// when that was longer than the client would wait; 0 otherwise.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s: %s (HTTP %d)", e.Provider, e.Reason, e.Status)
	}
	return fmt.Sprintf("%s: %s", e.Provider, e.Reason)
}

// KindOf returns the Kind of a provider error anywhere in err's chain, or ""
// when err is not a provider error.
func KindOf(err error) Kind {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Kind
	}
	return ""
}
