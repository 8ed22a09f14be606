package syncer

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// InvitationStore is the storage of invitation emails; *postgres.DB
// implements it.
type InvitationStore interface {
	ClaimInvitationMails(ctx context.Context, n int, claimFor time.Duration, maxAttempts int) ([]tokka.InvitationMail, error)
	FinishInvitationMail(ctx context.Context, id string, sent bool, reason string) error
}

// Mailer sends one email; *notify.Mailer implements it.
type Mailer interface {
	Send(ctx context.Context, e notify.Email) error
}

// Invitations mails team invitations. The api cannot send email (it talks
// only to the database and the Auth server), so it stores each invitation's
// token sealed to the syncer's key, bound to the team and the invitation;
// the syncer opens it, mails it to the invited address and the database
// forgets it (only its hash stays).
type Invitations struct {
	Store  InvitationStore
	Mailer Mailer
	// URL is INVITATION_URL: the SPA page that accepts an invitation; the
	// email links to it followed by "/" and the token. Empty: the email
	// carries the token alone.
	URL string
}

// Invitation mail tuning: how many per pass, how long one claim lasts,
// and how many tries an address gets.
const (
	invitationBatch       = 50
	invitationClaimFor    = 5 * time.Minute
	invitationMaxAttempts = 5
)

// mailInvitations sends the invitations waiting for their email. A token
// that does not open (a blob altered or copied) is not mailed and counts
// as a failed attempt; so does a relay that refuses.
func (s *Syncer) mailInvitations(ctx context.Context) {
	iv := s.cfg.Invitations
	if iv == nil {
		return
	}
	mails, err := iv.Store.ClaimInvitationMails(ctx, invitationBatch, invitationClaimFor, invitationMaxAttempts)
	if err != nil {
		if ctx.Err() == nil {
			s.failures.Warn("claiming invitation emails failed").Err(err).Msg("claiming invitation emails failed")
		}
		return
	}
	for _, m := range mails {
		sent, reason := true, ""
		if err := s.mailInvitation(ctx, iv, m); err != nil {
			sent, reason = false, notify.Reason(err)
			s.log.Warn().Str("invitation_id", m.ID).Str("reason", reason).Msg("invitation email not sent")
		}
		if err := iv.Store.FinishInvitationMail(ctx, m.ID, sent, reason); err != nil {
			s.failures.Warn("recording an invitation email failed").Err(err).Msg("recording an invitation email failed")
		}
	}
}

func (s *Syncer) mailInvitation(ctx context.Context, iv *Invitations, m tokka.InvitationMail) error {
	b := parseSealed(m.TokenSealed)
	token, err := s.open(b, seal.Binding{TeamID: m.TeamID, ConnectionID: m.ID, Provider: tokka.InvitationBinding})
	if err != nil {
		return &notify.SendError{Reason: "the sealed invitation token does not open"}
	}
	defer token.Wipe()
	return iv.Mailer.Send(ctx, invitationEmail(iv.URL, m, string(token.Bytes())))
}

// invitationEmail is the message for one invitation. The team's name is
// the members' own text: it goes in the body only, never a header.
func invitationEmail(url string, m tokka.InvitationMail, token string) notify.Email {
	link := token
	if url != "" {
		link = strings.TrimRight(url, "/") + "/" + token
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Hello,\n\nYou have been invited to the team %q on Tokka as %s.\n\n", m.TeamName, m.Role)
	fmt.Fprintf(&b, "To accept, sign in to Tokka with this email address (%s) and open:\n\n  %s\n\n", m.Email, link)
	fmt.Fprintf(&b, "The invitation works once and expires on %s (UTC).\n", m.ExpiresAt.UTC().Format("2006-01-02 15:04"))
	b.WriteString("If you did not expect it, ignore this email: nothing happens unless you accept.\n\nTokka\n")
	return notify.Email{To: m.Email, Subject: "You are invited to a team on Tokka", Body: b.String()}
}
