package syncer

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// UnusedKeyDays is how long an active key may go unused before its owner is
// told to consider revoking it.
const UnusedKeyDays = 90

// reportsLastUse are the providers whose key listings say when a key was
// last used.
var reportsLastUse = map[tokka.Provider]bool{tokka.OpenAI: true}

// markHeldKey sets Held on the admin key of d that is key, while key is
// still open. The providers never say which key made a request, and OpenAI
// lists admin keys only by id and redacted value ("sk-admin...wxyz"), so the
// match is by that value: its visible start and end must be key's
// (secret.Key.MatchesHint). Two candidates are as good as none: nothing is
// marked rather than the wrong key. Anthropic lists no admin keys, so there
// nothing is ever marked.
func markHeldKey(d *tokka.Directory, key *secret.Key) {
	held := -1
	for i, k := range d.Keys {
		if !k.Admin || k.Hint == "" || !key.MatchesHint(k.Hint) {
			continue
		}
		if held >= 0 {
			return
		}
		held = i
	}
	if held >= 0 {
		d.Keys[held].Held = true
	}
}

// hygieneAlerts returns the alerts the directory read at now calls for,
// each with a dedup key so it is raised once however often it is read:
// every active key unused for UnusedKeyDays (never used: created that long
// ago) at a provider that reports last use (OpenAI; Anthropic's key listing
// documents no last-used time, so there every old key would look unused),
// and the admin key this connection holds when the provider's own
// created_at is more than rotationDays ago (negative: not checked). A new
// admin key is found by storage, which alone knows the previous directory
// (postgres.writeDirectory). Alerts name keys only by name and the
// provider's redacted value.
func hygieneAlerts(l tokka.Lease, d *tokka.Directory, now time.Time, rotationDays int) []tokka.Alert {
	if d == nil {
		return nil
	}
	var out []tokka.Alert
	conn := l.ConnectionID
	unusedBefore := now.AddDate(0, 0, -UnusedKeyDays)
	for _, k := range d.Keys {
		if reportsLastUse[l.Provider] && (k.Status == "active" || k.Status == "") {
			last, never := k.LastUsedAt, k.LastUsedAt == nil
			if never {
				last = k.CreatedAt
			}
			if last != nil && last.Before(unusedBefore) {
				title := fmt.Sprintf("Key %q (%s) has not been used for %d days: revoke it if nobody needs it", k.Name, k.Hint, UnusedKeyDays)
				if never {
					title = fmt.Sprintf("Key %q (%s) was created more than %d days ago and never used: revoke it if nobody needs it", k.Name, k.Hint, UnusedKeyDays)
				}
				out = append(out, tokka.Alert{
					TeamID: l.TeamID, Kind: tokka.AlertKeyAccess, Severity: "warning", ConnectionID: &conn,
					DedupKey: "key_unused:" + conn + ":" + k.ID, Title: title,
					Detail: keyDetail("unused_key", k, map[string]any{"unused_days": UnusedKeyDays}),
				})
			}
		}
		if k.Held && rotationDays >= 0 && k.CreatedAt != nil && k.CreatedAt.Before(now.AddDate(0, 0, -rotationDays)) {
			age := int(now.Sub(*k.CreatedAt).Hours() / 24)
			out = append(out, tokka.Alert{
				TeamID: l.TeamID, Kind: tokka.AlertKeyRotation, Severity: "warning", ConnectionID: &conn,
				DedupKey: "key_rotation:provider:" + conn + ":" + k.ID,
				Title:    fmt.Sprintf("The admin key Tokka holds (%q, %s) was created %d days ago at the provider: rotate it", k.Name, k.Hint, age),
				Detail:   keyDetail("held_key_age", k, map[string]any{"age_days": age, "reminder_days": rotationDays}),
			})
		}
	}
	return out
}

// keyDetail is an alert's detail about key k: why, its id, name, kind and
// redacted value, and extra.
func keyDetail(reason string, k tokka.DirectoryKey, extra map[string]any) json.RawMessage {
	kind := tokka.KeyKindAPI
	if k.Admin {
		kind = tokka.KeyKindAdmin
	}
	m := map[string]any{"reason": reason, "key_id": k.ID, "key_name": k.Name, "key_hint": k.Hint, "key_kind": kind}
	if k.CreatedAt != nil {
		m["key_created_at"] = k.CreatedAt.UTC().Format(time.RFC3339)
	}
	if k.LastUsedAt != nil {
		m["key_last_used_at"] = k.LastUsedAt.UTC().Format(time.RFC3339)
	}
	for n, v := range extra {
		m[n] = v
	}
	b, _ := json.Marshal(m)
	return b
}
