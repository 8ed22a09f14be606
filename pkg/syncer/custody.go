package syncer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"

	"github.com/rs/zerolog"

	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// kidLister is implemented by openers that can name the key ids they hold
// (current first); *keyring.Keyring does.
type kidLister interface {
	KIDs() []string
}

// sealed is a stored blob with its public header parsed once per sync (or
// rewrap): the header names it in audit details and logs, explains it when
// it does not open, and the parsed form is what the opener opens.
type sealed struct {
	blob   string
	parsed seal.Blob
	ok     bool // the blob is well formed
}

func parseSealed(blob string) sealed {
	p, err := seal.ParseBlob(blob)
	return sealed{blob: blob, parsed: p, ok: err == nil}
}

// label names what the blob is sealed under, for audit details and logs:
// "v2 key <kid>", "v1 (seed format)" or "malformed". It is derived from
// public parts only; no ciphertext reaches it.
func (b sealed) label() string {
	switch {
	case !b.ok:
		return "malformed"
	case b.parsed.Version == 1:
		return "v1 (seed format)"
	}
	return "v2 key " + b.parsed.KID
}

// fingerprint is the first 16 hex digits of SHA-256 of the stored blob: it
// tells two blobs apart in an alert without repeating any of the ciphertext.
func (b sealed) fingerprint() string {
	sum := sha256.Sum256([]byte(b.blob))
	return hex.EncodeToString(sum[:8])
}

// open opens b for the row binding; a malformed blob fails like any other
// that does not open, without reaching the opener.
func (s *Syncer) open(b sealed, binding seal.Binding) (*secret.Key, error) {
	if !b.ok {
		return nil, seal.ErrCannotOpen
	}
	return s.opener.OpenBlob(b.parsed, binding)
}

// diagnosis explains a blob that did not open. The keyring itself answers
// every failure with one error (seal.ErrCannotOpen) so that nothing outside
// learns which byte was wrong; this looks only at the blob's public header and
// the key ids configured, which is enough to tell an operator's problem (a
// key id no configured key has) from an integrity failure (a blob altered, or
// copied from another row, whose key id we do hold).
type diagnosis struct {
	integrity bool   // tampering or a copied blob, not a missing key
	reason    string // for the connection's last_error, shown to the user
	detail    string // for the audit event
	title     string // for the key_access alert
	version   string // "v1", "v2" or "malformed", for the alert detail
	kid       string // the blob's key id (v2), for the alert detail
}

// diagnose explains why b did not open; held names the key ids configured,
// or is nil when the opener cannot say (then a v2 blob's key id is taken as
// held).
func diagnose(b sealed, held kidLister) diagnosis {
	p := b.parsed
	if !b.ok {
		return diagnosis{
			integrity: true, version: "malformed",
			reason: "the stored key is damaged; paste the key again",
			detail: "integrity failure: the sealed key is malformed",
			title:  "A stored key failed its integrity check",
		}
	}
	if p.Version == 1 {
		return diagnosis{
			version: "v1",
			reason:  "the stored key cannot be opened by any of Tokka's encryption keys; paste the key again",
			detail:  "cannot open: the seed-format (v1) sealed key opens with no configured key, or failed its integrity check",
			title:   "A stored key could not be opened",
		}
	}
	known := true
	if held != nil {
		known = slices.Contains(held.KIDs(), p.KID)
	}
	if !known {
		return diagnosis{
			version: "v2", kid: p.KID,
			reason: "the stored key was sealed with an encryption key Tokka no longer has; paste the key again",
			detail: "no configured key: the sealed key is under key id " + p.KID + ", which none of this syncer's keys has",
			title:  "A stored key could not be opened",
		}
	}
	return diagnosis{
		integrity: true, version: "v2", kid: p.KID,
		reason: "the stored key failed its integrity check; paste the key again",
		detail: "integrity failure: the sealed key under key id " + p.KID + " does not open for this connection (altered, or copied from another connection)",
		title:  "A stored key failed its integrity check",
	}
}

// raiseKeyAccess tells the owner of the row that its stored key did not
// open. The dedup key names the connection, the blob's key id (or version)
// and its fingerprint, so every sync that meets the same blob raises the
// same single alert, while a different bad blob raises a new one.
func (s *Syncer) raiseKeyAccess(ctx context.Context, log zerolog.Logger, userID, connID string, blob sealed, d diagnosis) {
	if err := raiseKeyAccess(ctx, s.store, userID, connID, blob, d); err != nil {
		log.Error().Err(err).Msg("raising the key_access alert failed")
	}
}

// AlertRaiser raises an alert unless an open one for the same thing
// exists; it reports whether it raised one.
type AlertRaiser interface {
	RaiseAlert(ctx context.Context, a tokka.Alert) (bool, error)
}

func raiseKeyAccess(ctx context.Context, store AlertRaiser, userID, connID string, blob sealed, d diagnosis) error {
	fp := blob.fingerprint()
	id := d.kid
	if id == "" {
		id = d.version
	}
	severity := "warning"
	if d.integrity {
		severity = "critical"
	}
	detail, err := json.Marshal(map[string]string{
		"reason": d.reason, "blob_version": d.version, "kid": d.kid, "blob_fingerprint": fp,
	})
	if err != nil {
		return err
	}
	conn := connID
	_, err = store.RaiseAlert(context.WithoutCancel(ctx), tokka.Alert{
		TeamID: userID, Kind: tokka.AlertKeyAccess, Severity: severity, ConnectionID: &conn,
		DedupKey: "key_access:" + connID + ":" + id + ":" + fp,
		Title:    d.title, Detail: detail,
	})
	return err
}
