package syncer_test

import (
	"context"
	"crypto/sha256"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	notifier "github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/notify/notifytest"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/syncer"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// invite records an invitation to team as the api does: its token hashed
// and sealed to the syncer's key, bound to the team and the invitation.
func (b *testBundle) invite(t *testing.T, owner tokka.User, team, email, token string, bind seal.Binding) string {
	t.Helper()
	id := uuid.NewString()
	if bind.ConnectionID == "" {
		bind = seal.Binding{TeamID: team, ConnectionID: id, Provider: tokka.InvitationBinding}
	}
	sealed, err := b.kr.PublicKey().Seal(secret.FromString(token), bind)
	require.NoError(t, err)
	hash := sha256.Sum256([]byte(token))
	owner.Team = team
	_, err = b.db.CreateInvitation(context.Background(), owner,
		tokka.Invitation{ID: id, TeamID: team, Email: email, Role: tokka.RoleViewer}, hash[:], sealed, time.Hour, "api:t")
	require.NoError(t, err)
	return id
}

// TestSyncerMailsInvitationsAndForgetsTheirTokens: each open invitation is
// mailed once, with its token and the accept link, by the syncer (the api
// sends no email); then the database holds only the token's hash. A token
// sealed for another invitation does not open and is not mailed; tokens of
// invitations no longer open are dropped unsent.
func TestSyncerMailsInvitationsAndForgetsTheirTokens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	smtp := notifytest.NewSMTPServer(t)
	cfg, err := notifier.ParseSMTPURL(smtp.URL("", ""), "tokka@example.com")
	require.NoError(t, err)

	ownerID := uuid.NewString()
	owner := tokka.User{ID: ownerID, Email: "o@example.com",
		Claims: []byte(`{"sub":"` + ownerID + `","role":"authenticated","email":"o@example.com"}`)}
	team, err := b.db.CreateTeam(ctx, owner, "Growth 🌱", "api:t")
	require.NoError(t, err)

	token := "tki_" + strings.Repeat("A", 40) + "abc"
	good := b.invite(t, owner, team.ID, "new@example.com", token, seal.Binding{})
	moved := b.invite(t, owner, team.ID, "moved@example.com", "tki_"+strings.Repeat("M", 43),
		seal.Binding{TeamID: team.ID, ConnectionID: good, Provider: tokka.InvitationBinding})
	revoked := b.invite(t, owner, team.ID, "gone@example.com", "tki_"+strings.Repeat("R", 43), seal.Binding{})
	owner.Team = team.ID
	require.NoError(t, b.db.RevokeInvitation(ctx, owner, team.ID, revoked, "api:t"))

	log := zerolog.New(b.logs).Level(zerolog.DebugLevel)
	s := syncer.New(syncer.Config{Instance: "mailer", Invitations: &syncer.Invitations{Store: b.db,
		Mailer: notifier.NewMailer(cfg), URL: "https://app.example.com/invitations/"}},
		b.db, b.kr, b.clients, log, syncer.NewMetrics(prometheus.NewRegistry()))
	_, err = s.RunOnce(ctx)
	require.NoError(t, err)

	msgs := smtp.Messages()
	require.Len(t, msgs, 1, "one invitation is mailed")
	require.Equal(t, []string{"new@example.com"}, msgs[0].To)
	body, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(msgs[0].Data)))
	require.NoError(t, err)
	require.Contains(t, string(body), "https://app.example.com/invitations/"+token)
	require.Contains(t, string(body), `the team "Growth 🌱" on Tokka as viewer`)

	var rows []struct {
		ID       string  `db:"id"`
		Sealed   *string `db:"token_sealed"`
		Mailed   bool    `db:"mailed"`
		Attempts int     `db:"mail_attempts"`
	}
	require.NoError(t, b.sql.Select(&rows, `SELECT id, token_sealed, mailed_at IS NOT NULL AS mailed, mail_attempts
		FROM tokka.team_invitations WHERE team_id = $1`, team.ID))
	byID := map[string]int{}
	for i, r := range rows {
		byID[r.ID] = i
	}
	require.Nil(t, rows[byID[good]].Sealed, "a mailed token is forgotten")
	require.True(t, rows[byID[good]].Mailed)
	require.Nil(t, rows[byID[revoked]].Sealed, "a revoked invitation's token is dropped")
	require.False(t, rows[byID[revoked]].Mailed)
	require.NotNil(t, rows[byID[moved]].Sealed, "a token that does not open waits for its next attempt")
	require.False(t, rows[byID[moved]].Mailed)
	require.Equal(t, 1, rows[byID[moved]].Attempts)
	require.NotContains(t, b.logs.String(), token)

	// Another pass mails nothing again.
	_, err = s.RunOnce(ctx)
	require.NoError(t, err)
	require.Len(t, smtp.Messages(), 1)
}
