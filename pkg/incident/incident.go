// Package incident is Tokka's breach response: it finds the connections
// whose stored keys an incident may have exposed, quarantines them (their
// keys are never used again and their owners are alerted to rotate), and
// notifies the affected users by email, recording every step in each user's
// audit log. `syncer incident` is its command line; the README's incident
// runbook says when to run what.
package incident

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Window is the time an incident may have exposed keys, both ends
// inclusive, and the reference its records carry.
type Window struct {
	From, To time.Time
	// Ref names the incident in audit details, alerts and emails; it ties
	// together what list, quarantine and notify did for one incident.
	Ref string
}

var refPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ParseWindow reads --from and --to (RFC 3339, or a date: --from a date is
// its first instant, --to a date its last, UTC) and --ref (default derived
// from the window, so every command given the same window agrees). It
// fails with a message that names the flag.
func ParseWindow(from, to, ref string) (Window, error) {
	var w Window
	var err error
	if from == "" || to == "" {
		return w, errors.New("--from and --to are required (RFC 3339 like 2026-11-27T09:00:00Z, or a date)")
	}
	if w.From, err = parseTime(from, false); err != nil {
		return w, fmt.Errorf("--from: %w", err)
	}
	if w.To, err = parseTime(to, true); err != nil {
		return w, fmt.Errorf("--to: %w", err)
	}
	if !w.From.Before(w.To) {
		return w, errors.New("--from must be before --to")
	}
	w.Ref = ref
	if w.Ref == "" {
		w.Ref = "INC-" + w.From.Format("20060102T150405Z") + "-" + w.To.Format("20060102T150405Z")
	}
	if err := CheckRef(w.Ref); err != nil {
		return w, err
	}
	return w, nil
}

// CheckRef fails, naming --ref, unless ref is a valid incident reference:
// up to 64 letters, digits, '.', '_' or '-', starting with a letter or
// digit.
func CheckRef(ref string) error {
	if !refPattern.MatchString(ref) {
		return errors.New("--ref: use up to 64 letters, digits, '.', '_' or '-'")
	}
	return nil
}

func parseTime(s string, end bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not RFC 3339 (2026-11-27T09:00:00Z) or a date (2026-11-27)", s)
	}
	if end {
		return d.AddDate(0, 0, 1).Add(-time.Microsecond), nil
	}
	return d, nil
}

// layout is how the email prints the window's ends: to the second, or to
// the microsecond when both ends fall in the same second, so a short window
// never reads as one of no length ("22:08 to 22:08"). A --to date's last
// instant (23:59:59.999999) prints as 23:59:59.
func (w Window) layout() string {
	const seconds = "2006-01-02 15:04:05"
	if w.From.Format(seconds) == w.To.Format(seconds) {
		return seconds + ".000000"
	}
	return seconds
}

// String prints the window for people.
func (w Window) String() string {
	return w.From.Format(time.RFC3339) + " .. " + w.To.Format(time.RFC3339)
}

// Store is the storage incident response needs; *postgres.DB implements it.
type Store interface {
	AffectedConnections(ctx context.Context, from, to time.Time) ([]tokka.AffectedConnection, error)
	QuarantineConnection(ctx context.Context, a tokka.AffectedConnection, q tokka.Quarantine) (string, error)
	NotifiedUsers(ctx context.Context, ref string) (map[string]bool, error)
	TeamContacts(ctx context.Context, team string) ([]string, error)
	RecordNotification(ctx context.Context, ref, userID string, conns []tokka.AffectedConnection, ev tokka.AuditEvent) error
	QuarantinedBy(ctx context.Context, ref string) ([]tokka.Released, error)
	ReleaseConnection(ctx context.Context, r tokka.Released, ref, actor string) (string, error)
}

// Directory finds a user's email address; *AuthDirectory implements it.
type Directory interface {
	Email(ctx context.Context, userID string) (string, error)
}

// Mailer sends one email; *notify.Mailer implements it.
type Mailer interface {
	Send(ctx context.Context, e notify.Email) error
}

// Responder carries out the incident commands. Out receives the report
// meant for the operator.
type Responder struct {
	Store     Store
	Directory Directory // notify only
	Mailer    Mailer    // notify without dry run only
	Actor     string    // "syncer:<instance>", for audit events
	Out       io.Writer
	// Summary, when set, is the operator's account of what happened, put
	// in the email under "What happened".
	Summary string
}

// List prints every affected connection, one line each, and a summary
// line naming how many users and connections are affected: those whose key
// Tokka held at some time in the window (the connection existed then; deleted
// ones included) or decrypted in it. It fails only when the database does.
func (r *Responder) List(ctx context.Context, w Window) error {
	conns, err := r.Store.AffectedConnections(ctx, w.From, w.To)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(r.Out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tCONNECTION\tPROVIDER\tLABEL\tSTATUS\tDECRYPTED IN WINDOW\tKEY NOW STORED")
	for _, c := range conns {
		label, status := deref(c.Label), deref(c.Status)
		if !c.Present {
			label, status = "-", "deleted"
			if c.DeletedAt != nil {
				status = "deleted " + c.DeletedAt.UTC().Format(time.RFC3339)
			}
		}
		keyNow := "exposed"
		switch {
		case !c.Present:
			keyNow = "-"
		case !c.CurrentKeyExposed(w.To):
			keyNow = "replaced after the window"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%q\t%s\t%d\t%s\n", c.TeamID, c.ConnectionID, c.Provider, label, status, c.Decryptions, keyNow)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(r.Out, "incident %s, window %s: %d connections of %d users affected (keys held or decrypted during the window)\n",
		w.Ref, w, len(conns), len(byUser(conns)))
	return err
}

// QuarantineSummary counts what quarantine did.
type QuarantineSummary struct {
	Quarantined, KeyReplaced, Deleted, Already int
}

func (s QuarantineSummary) String() string {
	return fmt.Sprintf("quarantined %d, key replaced since %d, deleted %d, already recorded %d",
		s.Quarantined, s.KeyReplaced, s.Deleted, s.Already)
}

// Quarantine stops Tokka from using every affected key: each affected
// connection whose current key was held during the window becomes
// compromised (no syncer will lease it again), and every affected
// connection's owner gets a critical key_access alert telling them to
// rotate, with an incident.quarantined audit event per connection. It is
// idempotent per incident reference. It prints one line per connection and
// a summary, and stops at the first database error (run it again to
// resume).
func (r *Responder) Quarantine(ctx context.Context, w Window) (QuarantineSummary, error) {
	var sum QuarantineSummary
	conns, err := r.Store.AffectedConnections(ctx, w.From, w.To)
	if err != nil {
		return sum, err
	}
	for _, c := range conns {
		detail, err := json.Marshal(map[string]any{
			"incident": w.Ref, "from": w.From.Format(time.RFC3339), "to": w.To.Format(time.RFC3339),
			"action": "revoke this key at the provider, then paste a new one",
		})
		if err != nil {
			return sum, err
		}
		what := providerName(string(c.Provider)) + " connection"
		if c.Label != nil {
			what = fmt.Sprintf("%s connection %q", providerName(string(c.Provider)), *c.Label)
		}
		out, err := r.Store.QuarantineConnection(ctx, c, tokka.Quarantine{
			Ref: w.Ref, To: w.To, Actor: r.Actor,
			Reason: "this key may have been exposed in a security incident (" + w.Ref + "); Tokka no longer uses it: revoke it at the provider and paste a new one",
			Alert: tokka.Alert{
				Kind: tokka.AlertKeyAccess, Severity: "critical",
				DedupKey: "incident:" + w.Ref + ":" + c.ConnectionID,
				Title:    "Security incident: the key of your " + what + " may have been exposed; revoke and rotate it",
				Detail:   detail,
			},
		})
		if err != nil {
			return sum, fmt.Errorf("quarantine stopped at connection %s (run it again to resume): %w", c.ConnectionID, err)
		}
		switch out {
		case tokka.QuarantineDone:
			sum.Quarantined++
		case tokka.QuarantineKeyReplaced:
			sum.KeyReplaced++
		case tokka.QuarantineDeleted:
			sum.Deleted++
		case tokka.QuarantineAlready:
			sum.Already++
		}
		if _, err := fmt.Fprintf(r.Out, "%s\tuser %s\tconnection %s\n", out, c.TeamID, c.ConnectionID); err != nil {
			return sum, err
		}
	}
	_, err = fmt.Fprintf(r.Out, "quarantine %s: %s\n", w.Ref, sum)
	return sum, err
}

// ReleaseSummary counts what release did.
type ReleaseSummary struct {
	Released, Already, NotCompromised, StillHeld, Deleted int
}

// String is the summary line's counts, as release prints them.
func (s ReleaseSummary) String() string {
	return fmt.Sprintf("released %d, already released %d, no longer compromised %d, still quarantined by another incident %d, deleted %d",
		s.Released, s.Already, s.NotCompromised, s.StillHeld, s.Deleted)
}

// ErrNothingQuarantined is returned by Release when the reference set no
// connection to compromised: most likely a mistyped --ref.
var ErrNothingQuarantined = errors.New("this incident reference quarantined no connection; check --ref (or the --from/--to that derived it)")

// Release undoes a mistaken quarantine: every connection the incident ref
// set to compromised goes back to pending (its key is used again) with an
// incident.released audit event, unless its user has pasted a new key since
// (nothing to undo) or it was deleted; one that another incident's
// quarantine still holds gets the event but stays compromised until that
// one is released too. Alerts and notifications already sent are not taken back. It is
// idempotent, prints one line per connection and a summary, and fails when
// the database does (run it again to resume) or with ErrNothingQuarantined.
func (r *Responder) Release(ctx context.Context, ref string) (ReleaseSummary, error) {
	var sum ReleaseSummary
	conns, err := r.Store.QuarantinedBy(ctx, ref)
	if err != nil {
		return sum, err
	}
	if len(conns) == 0 {
		return sum, fmt.Errorf("release %s: %w", ref, ErrNothingQuarantined)
	}
	for _, c := range conns {
		out, err := r.Store.ReleaseConnection(ctx, c, ref, r.Actor)
		if err != nil {
			return sum, fmt.Errorf("release stopped at connection %s (run it again to resume): %w", c.ConnectionID, err)
		}
		switch out {
		case tokka.ReleaseDone:
			sum.Released++
		case tokka.ReleaseAlready:
			sum.Already++
		case tokka.ReleaseNotCompromised:
			sum.NotCompromised++
		case tokka.ReleaseStillHeld:
			sum.StillHeld++
		case tokka.ReleaseDeleted:
			sum.Deleted++
		}
		if _, err := fmt.Fprintf(r.Out, "%s\tuser %s\tconnection %s\n", out, c.TeamID, c.ConnectionID); err != nil {
			return sum, err
		}
	}
	_, err = fmt.Fprintf(r.Out, "release %s: %s\n", ref, sum)
	return sum, err
}

// NotifySummary counts what notify did.
type NotifySummary struct {
	Notified, Already, NoAddress, Failed int
	Connections                          int // of the users notified (or that would be)
}

func (s NotifySummary) String() string {
	return fmt.Sprintf("notified %d users about %d connections, already notified %d, no address %d, failed %d",
		s.Notified, s.Connections, s.Already, s.NoAddress, s.Failed)
}

// ErrNotQuarantined is returned by Notify (without dry run) while an
// affected connection's exposed key is still in use: the email says Tokka
// stopped using the keys, so quarantine must run first.
var ErrNotQuarantined = errors.New("some affected keys are still in use; run `syncer incident quarantine` with the same window first")

// Notify emails every affected user once per incident: what was exposed,
// what Tokka is doing, and what they must do (revoke and rotate the keys).
// Addresses come from the Directory. Each user's outcome is recorded as one
// incident.notified event per affected connection (success, or failure
// with a reason); users already notified for this incident are skipped, so
// a second run reaches only those the first one missed. With dryRun it
// only prints what it would send and writes nothing. A user the Auth server
// has no address for is counted, not an error; the summary's Failed counts
// lookups or sends that went wrong (run again to retry them). It returns an
// error only when the database fails or, without dryRun, when some keys are
// not quarantined yet.
func (r *Responder) Notify(ctx context.Context, w Window, dryRun bool) (NotifySummary, error) {
	var sum NotifySummary
	conns, err := r.Store.AffectedConnections(ctx, w.From, w.To)
	if err != nil {
		return sum, err
	}
	var live []string
	for _, c := range conns {
		if c.CurrentKeyExposed(w.To) && tokka.ConnectionStatus(deref(c.Status)) != tokka.StatusCompromised {
			live = append(live, c.ConnectionID)
		}
	}
	if len(live) > 0 {
		if !dryRun {
			return sum, fmt.Errorf("%w (%d connections, e.g. %s)", ErrNotQuarantined, len(live), live[0])
		}
		fmt.Fprintf(r.Out, "warning: %d affected keys are still in use; run quarantine before the real notify\n", len(live))
	}
	done, err := r.Store.NotifiedUsers(ctx, w.Ref)
	if err != nil {
		return sum, err
	}
	users := byUser(conns)
	for _, u := range sortedKeys(users) {
		uc := users[u]
		if done[u] {
			sum.Already++
			fmt.Fprintf(r.Out, "already notified\tuser %s\n", u)
			continue
		}
		contacts, err := r.Store.TeamContacts(ctx, u)
		if err != nil {
			return sum, err
		}
		msg := Message(w, r.Summary, uc)
		var failures []string
		for _, who := range contacts {
			if err := r.notifyOne(ctx, who, msg, len(uc), dryRun); err != nil {
				if errors.Is(err, ErrNoAddress) {
					sum.NoAddress++
				} else {
					sum.Failed++
				}
				fmt.Fprintf(r.Out, "failed\tteam %s\tuser %s\t%s\n", u, who, reason(err))
				failures = append(failures, "user "+who+": "+reason(err))
			}
		}
		if dryRun {
			if len(failures) == 0 {
				sum.Notified++
				sum.Connections += len(uc)
			}
			continue
		}
		if len(failures) > 0 {
			// Recorded as a failure, so the next run mails the team's
			// owners and admins again (some may get it twice: better than
			// none).
			if rerr := r.record(ctx, w, u, uc, tokka.OutcomeFailure, "not every owner and admin was notified: "+
				strings.Join(failures, "; ")); rerr != nil {
				return sum, rerr
			}
			continue
		}
		if err := r.record(ctx, w, u, uc, tokka.OutcomeSuccess,
			fmt.Sprintf("breach notification emailed to the team's %d owners and admins", len(contacts))); err != nil {
			return sum, fmt.Errorf("the email to team %s went out but recording it failed: %w", u, err)
		}
		sum.Notified++
		sum.Connections += len(uc)
		fmt.Fprintf(r.Out, "notified\tteam %s\t%d connections\t%d people\n", u, len(uc), len(contacts))
	}
	prefix := "notify " + w.Ref
	if dryRun {
		prefix += " (dry run, nothing sent or recorded)"
	}
	_, err = fmt.Fprintf(r.Out, "%s: %s\n", prefix, sum)
	return sum, err
}

// notifyOne mails msg, about conns connections, to user who's address (or,
// on a dry run, prints it).
func (r *Responder) notifyOne(ctx context.Context, who string, msg notify.Email, conns int, dryRun bool) error {
	addr, err := r.Directory.Email(ctx, who)
	if err != nil {
		return err
	}
	msg.To = addr
	if dryRun {
		_, err := fmt.Fprintf(r.Out, "--- would send to %s (user %s, %d connections)\nSubject: %s\n\n%s\n",
			addr, who, conns, msg.Subject, msg.Body)
		return err
	}
	return r.Mailer.Send(ctx, msg)
}

func (r *Responder) record(ctx context.Context, w Window, userID string, conns []tokka.AffectedConnection, outcome, detail string) error {
	return r.Store.RecordNotification(ctx, w.Ref, userID, conns, tokka.AuditEvent{
		Outcome: outcome, Purpose: "breach notification", Actor: r.Actor, Detail: detail,
	})
}

// reason is an error's text without anything that could be an address:
// notify.SendError reasons are written to be safe; directory errors name
// only statuses.
func reason(err error) string {
	var se *notify.SendError
	if errors.As(err, &se) {
		return se.Reason
	}
	if errors.Is(err, ErrNoAddress) {
		return ErrNoAddress.Error()
	}
	return err.Error()
}

// Message is the breach notification for one user's affected connections
// (To left empty): what may have been compromised, what Tokka is doing, and
// what the user should do. It never fails.
func Message(w Window, summary string, conns []tokka.AffectedConnection) notify.Email {
	var b strings.Builder
	b.WriteString("Hello,\n\n")
	b.WriteString("We are writing to tell you about a security incident at Tokka that may have exposed\n")
	b.WriteString("provider Admin API keys you stored with us. This is what we know now.\n\n")

	b.WriteString("WHAT HAPPENED\n\n")
	if summary != "" {
		b.WriteString(strings.TrimSpace(summary) + "\n")
	} else {
		b.WriteString("Systems that hold Tokka's stored provider keys may have been accessed by someone\n")
		b.WriteString("without authorisation.\n")
	}
	layout := w.layout()
	fmt.Fprintf(&b, "The period concerned is %s to %s (UTC). Our reference: %s.\n\n",
		w.From.Format(layout), w.To.Format(layout), w.Ref)

	b.WriteString("WHAT MAY HAVE BEEN COMPROMISED\n\n")
	b.WriteString("The Admin API keys of these connections of yours, which Tokka held during that period:\n\n")
	for _, c := range conns {
		b.WriteString("  - " + describe(c, w) + "\n")
	}
	b.WriteString("\nAn Admin API key gives broad control over a provider organisation (its API keys,\n")
	b.WriteString("projects, members and usage data), so treat these keys as known to someone else.\n\n")

	b.WriteString("WHAT TOKKA IS DOING\n\n")
	b.WriteString("  - We have stopped using these keys. Connections holding one are marked\n")
	b.WriteString("    \"compromised\": Tokka will not decrypt or use the key again, and syncing stops\n")
	b.WriteString("    until you store a new key.\n")
	b.WriteString("  - Each of these connections has a critical alert in Tokka, and every step we take is\n")
	b.WriteString("    recorded in your audit log (Settings > Security) as incident.quarantined and\n")
	b.WriteString("    incident.notified.\n")
	b.WriteString("  - We are investigating how this happened and securing the affected systems.\n\n")

	b.WriteString("WHAT YOU SHOULD DO NOW\n\n")
	b.WriteString("  1. Revoke each key listed above in the provider's console (OpenAI: organization\n")
	b.WriteString("     settings, Admin keys; Anthropic Console: Settings, Admin keys). Only revoking\n")
	b.WriteString("     makes a copied key useless.\n")
	b.WriteString("  2. Create a new Admin API key and paste it into the connection in Tokka (or delete\n")
	b.WriteString("     the connection). Syncing resumes with the new key.\n")
	fmt.Fprintf(&b, "  3. Check your provider organisation's audit log and usage since %s UTC for activity\n",
		w.From.Format(layout))
	b.WriteString("     you do not recognise.\n\n")
	b.WriteString("Reply to this email if you have questions. We are sorry for the trouble this causes.\n\n")
	b.WriteString("The Tokka team\n")
	return notify.Email{
		Subject: "Security incident: rotate the provider keys you stored in Tokka (" + w.Ref + ")",
		Body:    b.String(),
	}
}

// describe is one line of the email about one connection: never more of
// the key than its hint (prefix and last 4 characters).
func describe(c tokka.AffectedConnection, w Window) string {
	name := providerName(string(c.Provider))
	if !c.Present {
		s := name + " connection " + c.ConnectionID + " (deleted"
		if c.DeletedAt != nil {
			s += " on " + c.DeletedAt.UTC().Format(time.DateOnly)
		}
		return s + "): its key may have been exposed before it was deleted; revoke it"
	}
	s := fmt.Sprintf("%s connection %q (key %s)", name, deref(c.Label), deref(c.KeyHint))
	if !c.CurrentKeyExposed(w.To) {
		s = fmt.Sprintf("%s connection %q", name, deref(c.Label))
		s += ": you have replaced its key since; the key it held before " + c.KeySetAt.UTC().Format(time.DateOnly) +
			" may have been exposed; revoke that one"
		return s
	}
	s += ": no longer used by Tokka"
	if c.Decryptions > 0 {
		times := "once"
		if c.Decryptions > 1 {
			times = fmt.Sprintf("%d times", c.Decryptions)
		}
		s += "; it was decrypted for syncing " + times + " during the period"
	}
	return s
}

func providerName(p string) string {
	switch p {
	case "openai":
		return "OpenAI"
	case "anthropic":
		return "Anthropic"
	}
	return p
}

func byUser(conns []tokka.AffectedConnection) map[string][]tokka.AffectedConnection {
	m := map[string][]tokka.AffectedConnection{}
	for _, c := range conns {
		m[c.TeamID] = append(m[c.TeamID], c)
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
