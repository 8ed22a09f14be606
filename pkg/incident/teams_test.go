package incident_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/incident"
	"github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// directory knows everyone's address.
type directory struct{}

func (directory) Email(_ context.Context, userID string) (string, error) {
	return "u-" + userID[:8] + "@example.com", nil
}

// outbox keeps what would have been sent.
type outbox struct {
	mu sync.Mutex
	to []string
}

func (o *outbox) Send(_ context.Context, e notify.Email) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.to = append(o.to, e.To)
	return nil
}

func member(id string) tokka.User {
	email := "u-" + id[:8] + "@example.com"
	return tokka.User{ID: id, Email: email,
		Claims: []byte(fmt.Sprintf(`{"sub":%q,"role":"authenticated","email":%q}`, id, email))}
}

// TestNotifyReachesEveryOwnerAndAdminOfATeam: a breach notification about
// a team's key goes to each of the team's owners and admins (not its
// viewers), once; a personal team's goes to its user.
func TestNotifyReachesEveryOwnerAndAdminOfATeam(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	owner, admin, viewer, solo := member(uuid.NewString()), member(uuid.NewString()), member(uuid.NewString()), member(uuid.NewString())
	team, err := b.db.CreateTeam(ctx, owner, "Platform", "api:t")
	require.NoError(t, err)
	for _, j := range []struct {
		u    tokka.User
		role tokka.Role
	}{{admin, tokka.RoleAdmin}, {viewer, tokka.RoleViewer}} {
		hash := sha256.Sum256([]byte(j.u.ID))
		o := owner
		o.Team = team.ID
		_, err := b.db.CreateInvitation(ctx, o, tokka.Invitation{ID: uuid.NewString(), TeamID: team.ID, Email: j.u.Email, Role: j.role},
			hash[:], "", time.Hour, "api:t")
		require.NoError(t, err)
		_, err = b.db.AcceptInvitation(ctx, j.u, hash[:], "api:t")
		require.NoError(t, err)
	}
	b.addConnection(t, team.ID)
	b.addConnection(t, solo.ID)

	w, err := incident.ParseWindow(time.Now().Add(-time.Hour).Format(time.RFC3339Nano), time.Now().Format(time.RFC3339Nano), "INC-TEAMS")
	require.NoError(t, err)
	_, err = b.r.Quarantine(ctx, w)
	require.NoError(t, err)
	sent := &outbox{}
	b.r.Directory, b.r.Mailer = directory{}, sent
	sum, err := b.r.Notify(ctx, w, false)
	require.NoError(t, err, b.out.String())
	require.Equal(t, 2, sum.Notified, "two teams")
	got := append([]string(nil), sent.to...)
	sort.Strings(got)
	want := []string{owner.Email, admin.Email, solo.Email}
	sort.Strings(want)
	require.Equal(t, want, got, "every owner and admin, and the personal team's user; no viewer")

	// Done is done: a second run sends nothing.
	sent.to = nil
	sum, err = b.r.Notify(ctx, w, false)
	require.NoError(t, err)
	require.Equal(t, 2, sum.Already)
	require.Empty(t, sent.to)
}
