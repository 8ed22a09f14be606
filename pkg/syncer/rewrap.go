package syncer

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Rewrapper re-seals stored blobs to the current key; *keyring.Keyring
// implements it.
type Rewrapper interface {
	// NeedsRewrap reports whether blob is anything but v2 under the current key.
	NeedsRewrap(blob string) bool
	// Rewrap opens blob for b and seals it to the current key, wiping the
	// plaintext before it returns; seal.ErrCannotOpen when it does not open.
	Rewrap(blob string, b seal.Binding) (string, error)
	// KIDs lists the key ids held, current first.
	KIDs() []string
}

// RewrapStore is the storage a rewrap pass needs; *postgres.DB implements it.
type RewrapStore interface {
	ListSealedKeys(ctx context.Context, after string, n int) ([]tokka.SealedKey, error)
	RewrapKey(ctx context.Context, k tokka.SealedKey, ev tokka.AuditEvent, reseal func() (string, error)) error
	MarkUnopenable(ctx context.Context, k tokka.SealedKey, reason string, ev tokka.AuditEvent) error
	AlertRaiser
}

// RewrapSummary counts what one rewrap pass did with each connection.
type RewrapSummary struct {
	Rewrapped int // re-sealed to the current key (one key.rewrapped event each)
	Current   int // already v2 under the current key: left alone
	Failed    int // no configured key opens the blob: now needs_reconnect
	Skipped   int // replaced or deleted while the pass ran: the newer value is left alone
}

// String is the summary line `syncer rewrap` prints. It never fails.
func (s RewrapSummary) String() string {
	return fmt.Sprintf("rewrapped %d, already current %d, failed %d, skipped (changed meanwhile) %d",
		s.Rewrapped, s.Current, s.Failed, s.Skipped)
}

// rewrapBatch is how many connections one listing query returns.
const rewrapBatch = 100

// Rewrap is `syncer rewrap`: it walks every connection in id order and
// re-seals each blob that is v1 or under a retired key to the current key
// (see postgres.RewrapKey for the compare-and-swap and the audit event
// written before the key is opened). It is idempotent (a second pass finds
// everything current), resumable (each connection commits on its own, so an
// interrupted pass loses nothing and the next one picks up the rest), and
// safe beside running syncers and users replacing keys. A blob that no
// configured key opens puts its connection in needs_reconnect, with a
// key.rewrapped failure event and a key_access alert for its owner, and the
// pass goes on. It returns the summary so far with an error only when the
// database fails or ctx ends.
func Rewrap(ctx context.Context, store RewrapStore, kr Rewrapper, instance string, log zerolog.Logger) (RewrapSummary, error) {
	var sum RewrapSummary
	kids := kr.KIDs()
	current := kids[0]
	after := ""
	for {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		batch, err := store.ListSealedKeys(ctx, after, rewrapBatch)
		if err != nil {
			return sum, err
		}
		if len(batch) == 0 {
			return sum, nil
		}
		for _, k := range batch {
			if err := ctx.Err(); err != nil {
				return sum, err
			}
			after = k.ConnectionID
			if !kr.NeedsRewrap(k.Blob) {
				sum.Current++
				continue
			}
			if err := rewrapOne(ctx, store, kr, instance, current, k, &sum, log); err != nil {
				return sum, err
			}
		}
	}
}

func rewrapOne(ctx context.Context, store RewrapStore, kr Rewrapper, instance, current string, k tokka.SealedKey, sum *RewrapSummary, log zerolog.Logger) error {
	log = log.With().Str("connection_id", k.ConnectionID).Str("provider", string(k.Provider)).Logger()
	blob := parseSealed(k.Blob)
	from := blob.label()
	ev := tokka.AuditEvent{
		Action: tokka.ActionKeyRewrapped, Outcome: tokka.OutcomeSuccess,
		Purpose: "re-seal under the current encryption key", Actor: "syncer:" + instance,
		Detail: "from " + from + " to v2 key " + current,
	}
	b := seal.Binding{TeamID: k.TeamID, ConnectionID: k.ConnectionID, Provider: k.Provider}
	err := store.RewrapKey(ctx, k, ev, func() (string, error) { return kr.Rewrap(k.Blob, b) })
	switch {
	case err == nil:
		sum.Rewrapped++
		log.Debug().Str("from", from).Msg("key rewrapped")
		return nil
	case errors.Is(err, tokka.ErrBlobChanged):
		sum.Skipped++
		log.Info().Msg("key changed or connection deleted during rewrap; left as it is")
		return nil
	case !errors.Is(err, seal.ErrCannotOpen):
		return fmt.Errorf("rewrap: %w", err)
	}

	d := diagnose(blob, kr)
	ev.Outcome, ev.Detail = tokka.OutcomeFailure, d.detail
	err = store.MarkUnopenable(ctx, k, d.reason, ev)
	switch {
	case errors.Is(err, tokka.ErrBlobChanged):
		sum.Skipped++
		return nil
	case err != nil:
		return fmt.Errorf("rewrap: %w", err)
	}
	sum.Failed++
	log.Warn().Str("sealed_as", from).Bool("integrity_failure", d.integrity).
		Msg("no configured key opens this connection's key; it is now needs_reconnect")
	if err := raiseKeyAccess(ctx, store, k.TeamID, k.ConnectionID, blob, d); err != nil {
		log.Error().Err(err).Msg("raising the key_access alert failed")
	}
	return nil
}
