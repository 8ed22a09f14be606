package postgres_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// member is a user whose claims carry an email, as Supabase's do.
func member() tokka.User {
	id := uuid.NewString()
	email := "m" + id[:8] + "@example.com"
	return tokka.User{ID: id, Email: email,
		Claims: []byte(`{"sub":"` + id + `","role":"authenticated","aud":"authenticated","email":"` + email + `"}`)}
}

// inTeam is u acting in team.
func inTeam(u tokka.User, team string) tokka.User {
	u.Team = team
	return u
}

// teamOf makes a team owned by owner with an admin and a viewer who joined
// through invitations, as the api does it, and returns the team's id.
func (b *testBundle) teamOf(t *testing.T, owner, admin, viewer tokka.User) string {
	t.Helper()
	ctx := context.Background()
	team, err := b.db.CreateTeam(ctx, owner, "Platform", "api:create")
	require.NoError(t, err)
	require.Equal(t, tokka.RoleOwner, team.Role)
	for _, j := range []struct {
		u    tokka.User
		role tokka.Role
	}{{admin, tokka.RoleAdmin}, {viewer, tokka.RoleViewer}} {
		token := "tki_" + uuid.NewString()
		hash := sha256.Sum256([]byte(token))
		_, err := b.db.CreateInvitation(ctx, inTeam(owner, team.ID),
			tokka.Invitation{ID: uuid.NewString(), TeamID: team.ID, Email: j.u.Email, Role: j.role}, hash[:], "", time.Hour, "api:invite")
		require.NoError(t, err)
		joined, err := b.db.AcceptInvitation(ctx, j.u, hash[:], "api:accept")
		require.NoError(t, err)
		require.Equal(t, j.role, joined.Role)
	}
	return team.ID
}

// seedTeamRows gives team one row in every table a team owns, as the
// syncer and the api would have written them, and returns the connection.
func (b *testBundle) seedTeamRows(t *testing.T, owner tokka.User, team string) string {
	t.Helper()
	conn := b.addConnection(t, inTeam(owner, team), tokka.OpenAI)
	for _, q := range []string{
		`INSERT INTO tokka.usage_daily (connection_id, team_id, provider, day, family, model, requests) VALUES ($1, $2, 'openai', current_date, 'completions', 'm', 3)`,
		`INSERT INTO tokka.cost_daily (connection_id, team_id, provider, day, model, amount_usd, amount, currency) VALUES ($1, $2, 'openai', current_date, 'm', 1.25, 1.25, 'usd')`,
		`INSERT INTO tokka.usage_monthly (connection_id, team_id, provider, day, last_day, model, project_id, api_key_id, service_tier,
			input_uncached_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, output_tokens, requests)
			VALUES ($1, $2, 'openai', date_trunc('month', current_date), current_date, 'm', '', '', '', 0, 0, 0, 0, 0, 3)`,
		`INSERT INTO tokka.cost_monthly (connection_id, team_id, provider, day, last_day, model, project_id, api_key_id, amount_usd)
			VALUES ($1, $2, 'openai', date_trunc('month', current_date), current_date, 'm', '', '', 1.25)`,
		`INSERT INTO tokka.spend_daily (connection_id, team_id, provider, day, amount_usd) VALUES ($1, $2, 'openai', current_date, 1.25)`,
		`INSERT INTO tokka.directory_projects (connection_id, team_id, provider, id, kind, name, archived) VALUES ($1, $2, 'openai', 'proj_1', 'project', 'P', false)`,
		`INSERT INTO tokka.directory_keys (connection_id, team_id, provider, id, admin, name, redacted_hint, status, project_id)
			VALUES ($1, $2, 'openai', 'key_1', false, 'K', 'sk-…1', 'active', '')`,
		`INSERT INTO tokka.alerts (team_id, kind, connection_id, dedup_key, title) VALUES ($2, 'key_rotation', $1, 'rot', 'Rotate')`,
		`INSERT INTO tokka.budgets (id, team_id, name, amount_usd, scope, webhook_secret)
			SELECT gen_random_uuid(), $2, 'B', 10, 'all', 'whsec_' || repeat('ab', 32) WHERE $1::uuid IS NOT NULL`,
	} {
		_, err := b.sql.Exec(q, conn, team)
		require.NoError(t, err, q)
	}
	_, err := b.sql.Exec(`INSERT INTO tokka.budget_deliveries (team_id, budget_id, alert_id, channel)
		SELECT $1, b.id, a.id, 'webhook' FROM tokka.budgets b, tokka.alerts a WHERE b.team_id = $1 AND a.team_id = $1`, team)
	require.NoError(t, err)
	return conn
}

// teamTables is every table a team owns.
var teamTables = []string{"connections", "usage_daily", "cost_daily", "usage_monthly", "cost_monthly", "spend_daily",
	"directory_projects", "directory_keys", "alerts", "budgets", "budget_deliveries", "audit_events"}

// TestRolesDecideEveryTable is the role × table matrix, straight in SQL as
// role authenticated with each person's claims: every member reads every
// row of the team; a viewer changes nothing; an admin changes keys,
// budgets and alerts; someone outside sees and changes nothing; the team
// tables change only through the team functions.
func TestRolesDecideEveryTable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	owner, admin, viewer, outsider := member(), member(), member(), member()
	team := b.teamOf(t, owner, admin, viewer)
	conn := b.seedTeamRows(t, owner, team)

	for _, table := range teamTables {
		var all int
		require.NoError(t, b.sql.Get(&all, `SELECT count(*) FROM tokka.`+table+` WHERE team_id = $1`, team))
		require.Positive(t, all, table)
		for _, who := range []struct {
			name string
			u    tokka.User
			sees int
		}{{"owner", owner, all}, {"admin", admin, all}, {"viewer", viewer, all}, {"outsider", outsider, 0}} {
			var n int
			require.NoError(t, b.inRole(t, "authenticated", who.u, func(tx *sqlx.Tx) error {
				return tx.Get(&n, `SELECT count(*) FROM tokka.`+table)
			}), "%s reads %s", who.name, table)
			require.Equal(t, who.sees, n, "%s reads %s", who.name, table)
		}
	}

	// What each role may change, straight in SQL.
	writes := []struct {
		what  string
		query string
	}{
		{"rename a connection", `UPDATE tokka.connections SET label = 'x' WHERE id = '` + conn + `'`},
		{"delete a connection", `DELETE FROM tokka.connections WHERE id = '` + conn + `'`},
		{"add a connection", `INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key)
			VALUES (gen_random_uuid(), '` + team + `', 'openai', 'l', 'h', 'v2:00')`},
		{"acknowledge an alert", `UPDATE tokka.alerts SET acknowledged_at = now() WHERE team_id = '` + team + `'`},
		{"change a budget", `UPDATE tokka.budgets SET name = 'x' WHERE team_id = '` + team + `'`},
		{"delete a budget", `DELETE FROM tokka.budgets WHERE team_id = '` + team + `'`},
		{"add a budget", `INSERT INTO tokka.budgets (id, team_id, name, amount_usd, scope, webhook_secret)
			VALUES (gen_random_uuid(), '` + team + `', 'B', 1, 'all', 'whsec_' || repeat('ab', 32))`},
		{"append to the audit log", `INSERT INTO tokka.audit_events (team_id, action, outcome, actor)
			VALUES ('` + team + `', 'key.created', 'success', 'api:x')`},
		{"replace a key", `SELECT 1 WHERE tokka.replace_connection_key('` + conn + `', NULL, 'h', 'v2:01')`},
		{"ask for a sync", `SELECT 1 FROM tokka.request_sync('` + conn + `', 60) WHERE outcome = 'requested'`},
	}
	for _, w := range writes {
		for _, who := range []struct {
			name string
			u    tokka.User
		}{{"viewer", viewer}, {"outsider", outsider}} {
			n, err := b.exec(t, "authenticated", who.u, w.query)
			require.True(t, err != nil || n == 0, "a %s may not %s (changed %d rows)", who.name, w.what, n)
		}
		n, err := b.exec(t, "authenticated", admin, w.query)
		require.NoError(t, err, "an admin may %s", w.what)
		require.Positive(t, n, "an admin may %s", w.what)
	}

	// The team tables change only through the functions.
	for _, q := range []string{
		`INSERT INTO tokka.team_members (team_id, user_id, role) VALUES ('` + team + `', '` + outsider.ID + `', 'owner')`,
		`UPDATE tokka.team_members SET role = 'owner' WHERE team_id = '` + team + `'`,
		`DELETE FROM tokka.team_members WHERE team_id = '` + team + `'`,
		`UPDATE tokka.teams SET name = 'x' WHERE id = '` + team + `'`,
		`INSERT INTO tokka.team_invitations (id, team_id, email, role, token_hash, invited_by, expires_at)
			VALUES (gen_random_uuid(), '` + team + `', 'a@b.c', 'owner', sha256('x'), '` + owner.ID + `', now() + interval '1 day')`,
	} {
		for _, u := range []tokka.User{owner, admin, viewer, outsider} {
			_, err := b.exec(t, "authenticated", u, q)
			require.True(t, denied(err), "%s: %v", q, err)
		}
	}
	// No one reads an invitation's sealed token back but the syncer.
	for _, u := range []tokka.User{owner, admin} {
		_, err := b.exec(t, "authenticated", u, `SELECT token_sealed FROM tokka.team_invitations`)
		require.True(t, denied(err), "%v", err)
	}
	// Invitations are for admins and owners to see; members see members.
	for _, who := range []struct {
		u                    tokka.User
		members, invitations int
	}{{owner, 3, 2}, {admin, 3, 2}, {viewer, 3, 0}, {outsider, 0, 0}} {
		var m, i int
		require.NoError(t, b.inRole(t, "authenticated", who.u, func(tx *sqlx.Tx) error {
			if err := tx.Get(&m, `SELECT count(*) FROM tokka.team_members WHERE team_id = $1`, team); err != nil {
				return err
			}
			return tx.Get(&i, `SELECT count(*) FROM tokka.team_invitations WHERE team_id = $1`, team)
		}))
		require.Equal(t, who.members, m)
		require.Equal(t, who.invitations, i)
	}
}

// TestMembershipKeepsAnOwnerAndIsAudited walks the membership rules through
// storage: only owners change members, anyone may leave, the last owner and
// a personal team's founder stay owners, and every change lands in the
// team's audit chain under the acting user, which still verifies.
func TestMembershipKeepsAnOwnerAndIsAudited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	owner, admin, viewer := member(), member(), member()
	team := b.teamOf(t, owner, admin, viewer)
	role := func(r tokka.Role) *tokka.Role { return &r }

	require.Equal(t, tokka.CodeForbidden, tokka.ErrorCode(b.db.ChangeMember(ctx, admin, team, viewer.ID, role(tokka.RoleAdmin), "api:a")))
	require.Equal(t, tokka.CodeForbidden, tokka.ErrorCode(b.db.ChangeMember(ctx, viewer, team, admin.ID, nil, "api:a")))
	require.Equal(t, tokka.CodeConflict, tokka.ErrorCode(b.db.ChangeMember(ctx, owner, team, owner.ID, role(tokka.RoleViewer), "api:a")),
		"the last owner cannot be demoted")
	require.Equal(t, tokka.CodeConflict, tokka.ErrorCode(b.db.ChangeMember(ctx, owner, team, owner.ID, nil, "api:a")),
		"the last owner cannot leave")
	require.NoError(t, b.db.ChangeMember(ctx, owner, team, admin.ID, role(tokka.RoleOwner), "api:a"))
	require.NoError(t, b.db.ChangeMember(ctx, owner, team, owner.ID, nil, "api:a"), "with another owner, an owner may leave")
	require.NoError(t, b.db.ChangeMember(ctx, viewer, team, viewer.ID, nil, "api:a"), "anyone may leave")
	_, err := b.db.TeamRole(ctx, viewer, team)
	require.ErrorIs(t, err, tokka.ErrNotFound, "one who left is no member")
	_, err = b.db.ListConnectionsPage(ctx, inTeam(owner, team), nil, 10)
	require.NoError(t, err)

	// A personal team's founder stays its owner.
	p := member()
	personal, err := b.db.ListTeamsPage(ctx, p, nil, 100)
	require.NoError(t, err)
	require.Len(t, personal, 1)
	require.Equal(t, p.ID, personal[0].ID)
	require.True(t, personal[0].Personal)
	require.Equal(t, tokka.CodeConflict, tokka.ErrorCode(b.db.ChangeMember(ctx, p, p.ID, p.ID, role(tokka.RoleAdmin), "api:a")))
	require.Equal(t, tokka.CodeConflict, tokka.ErrorCode(b.db.DeleteTeam(ctx, p, p.ID, "api:a")), "a personal team stays")

	// The team's log, as its remaining owner reads it.
	evs, err := b.db.ListAuditEvents(ctx, inTeam(admin, team), 0, 100)
	require.NoError(t, err)
	var actions []string
	for _, ev := range evs {
		actions = append(actions, ev.Action)
		require.NotNil(t, ev.ActorUserID, ev.Action)
	}
	require.Equal(t, []string{"member.removed", "member.removed", "member.role_changed",
		"invitation.accepted", "invitation.created", "invitation.accepted", "invitation.created", "team.created"}, actions)
	require.Equal(t, viewer.ID, *evs[0].ActorUserID, "the viewer left by themselves")
	require.Equal(t, owner.ID, *evs[1].ActorUserID)
	v, err := b.db.VerifyAuditChain(ctx, inTeam(admin, team), true)
	require.NoError(t, err)
	require.True(t, v.Intact, "%+v", v)
}

// TestInvitationsAreSingleUseAndAddressed: an invitation is accepted once,
// only by the address it names, never after it expired or was revoked, and
// only an owner invites an owner.
func TestInvitationsAreSingleUseAndAddressed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	owner, admin, viewer := member(), member(), member()
	team := b.teamOf(t, owner, admin, viewer)
	invite := func(by tokka.User, email string, role tokka.Role) ([]byte, error) {
		token := "tki_" + uuid.NewString()
		hash := sha256.Sum256([]byte(token))
		_, err := b.db.CreateInvitation(ctx, by, tokka.Invitation{ID: uuid.NewString(), TeamID: team, Email: email, Role: role},
			hash[:], "", time.Hour, "api:i")
		return hash[:], err
	}
	_, err := invite(viewer, "x@example.com", tokka.RoleViewer)
	require.Equal(t, tokka.CodeForbidden, tokka.ErrorCode(err), "a viewer does not invite")
	_, err = invite(admin, "x@example.com", tokka.RoleOwner)
	require.Equal(t, tokka.CodeForbidden, tokka.ErrorCode(err), "an admin does not invite owners")

	newcomer, stranger := member(), member()
	hash, err := invite(admin, strings.ToUpper(newcomer.Email), tokka.RoleViewer)
	require.NoError(t, err)
	_, err = b.db.AcceptInvitation(ctx, stranger, hash, "api:x")
	require.Equal(t, tokka.CodeNotFound, tokka.ErrorCode(err), "another address")
	joined, err := b.db.AcceptInvitation(ctx, newcomer, hash, "api:x")
	require.NoError(t, err)
	require.Equal(t, team, joined.ID)
	_, err = b.db.AcceptInvitation(ctx, newcomer, hash, "api:x")
	require.Equal(t, tokka.CodeNotFound, tokka.ErrorCode(err), "used")

	late := member()
	hash, err = invite(owner, late.Email, tokka.RoleAdmin)
	require.NoError(t, err)
	_, err = b.sql.Exec(`UPDATE tokka.team_invitations SET expires_at = now() - interval '1 second' WHERE token_hash = $1`, hash)
	require.NoError(t, err)
	_, err = b.db.AcceptInvitation(ctx, late, hash, "api:x")
	require.Equal(t, tokka.CodeNotFound, tokka.ErrorCode(err), "expired")

	hash, err = invite(owner, late.Email, tokka.RoleAdmin)
	require.NoError(t, err)
	invs, err := b.db.ListInvitationsPage(ctx, inTeam(owner, team), team, nil, 100)
	require.NoError(t, err)
	open := invs[len(invs)-1]
	require.Equal(t, late.Email, open.Email)
	require.Nil(t, open.AcceptedAt)
	require.ErrorIs(t, b.db.RevokeInvitation(ctx, viewer, team, open.ID, "api:x"), tokka.ErrNotFound, "a viewer does not revoke")
	require.NoError(t, b.db.RevokeInvitation(ctx, admin, team, open.ID, "api:x"))
	_, err = b.db.AcceptInvitation(ctx, late, hash, "api:x")
	require.Equal(t, tokka.CodeNotFound, tokka.ErrorCode(err), "revoked")
	_, err = b.db.TeamRole(ctx, late, team)
	require.ErrorIs(t, err, tokka.ErrNotFound)
}

// TestRemovedMemberSeesNothingAtOnce: the next statement after a removal
// already runs without the membership.
func TestRemovedMemberSeesNothingAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	owner, admin, viewer := member(), member(), member()
	team := b.teamOf(t, owner, admin, viewer)
	b.seedTeamRows(t, owner, team)
	before, err := b.db.ListConnectionsPage(ctx, inTeam(viewer, team), nil, 10)
	require.NoError(t, err)
	require.Len(t, before, 1)
	require.NoError(t, b.db.ChangeMember(ctx, owner, team, viewer.ID, nil, "api:x"))
	after, err := b.db.ListConnectionsPage(ctx, inTeam(viewer, team), nil, 10)
	require.NoError(t, err)
	require.Empty(t, after)
	for _, table := range teamTables {
		var n int
		require.NoError(t, b.inRole(t, "authenticated", viewer, func(tx *sqlx.Tx) error {
			return tx.Get(&n, fmt.Sprintf(`SELECT count(*) FROM tokka.%s`, table))
		}))
		require.Zero(t, n, table)
	}
}

// TestTeamsMigrationKeepsEveryRowWithItsOwner migrates a database holding
// two users' data in every table (as migration 00021 left it) to teams:
// each user reaches every row they owned, through row-level security as
// role authenticated, in their personal team, which they own; neither sees
// the other's; the audit chains still verify and go on; and migrating down
// gives the rows back to their users.
func TestTeamsMigrationKeepsEveryRowWithItsOwner(t *testing.T) {
	t.Parallel()
	url, raw, downAgain := beforeMigration(t, 22)
	ctx := context.Background()
	rawx := sqlx.NewDb(raw, "postgres")

	alice, bob := member(), member()
	owned := map[string]map[string]int{}
	for _, u := range []tokka.User{alice, bob} {
		conn := uuid.NewString()
		for _, q := range []string{
			`INSERT INTO tokka.connections (id, user_id, provider, label, key_hint, sealed_key) VALUES ($1, $2, 'openai', 'org', 'h', 'v2:00')`,
			`INSERT INTO tokka.usage_daily (connection_id, user_id, provider, day, family, model, requests)
				SELECT $1, $2, 'openai', d, 'completions', 'm', 1 FROM generate_series(current_date - 9, current_date, '1 day') d`,
			`INSERT INTO tokka.cost_daily (connection_id, user_id, provider, day, model, amount_usd, amount, currency)
				SELECT $1, $2, 'openai', d, 'm', 0.5, 0.5, 'usd' FROM generate_series(current_date - 9, current_date, '1 day') d`,
			`INSERT INTO tokka.usage_monthly (connection_id, user_id, provider, day, last_day, model, project_id, api_key_id, service_tier,
				input_uncached_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, output_tokens, requests)
				VALUES ($1, $2, 'openai', date_trunc('month', current_date), current_date, 'm', '', '', '', 0, 0, 0, 0, 0, 10)`,
			`INSERT INTO tokka.cost_monthly (connection_id, user_id, provider, day, last_day, model, project_id, api_key_id, amount_usd)
				VALUES ($1, $2, 'openai', date_trunc('month', current_date), current_date, 'm', '', '', 5)`,
			`INSERT INTO tokka.spend_daily (connection_id, user_id, provider, day, amount_usd)
				SELECT $1, $2, 'openai', d, 0.5 FROM generate_series(current_date - 9, current_date, '1 day') d`,
			`INSERT INTO tokka.directory_projects (connection_id, user_id, provider, id, kind, name, archived) VALUES ($1, $2, 'openai', 'p', 'project', 'P', false)`,
			`INSERT INTO tokka.directory_keys (connection_id, user_id, provider, id, admin, name, redacted_hint, status, project_id)
				VALUES ($1, $2, 'openai', 'k', false, 'K', 'sk-…1', 'active', '')`,
			`INSERT INTO tokka.alerts (user_id, kind, connection_id, dedup_key, title) VALUES ($2, 'key_rotation', $1, 'rot', 'Rotate')`,
			`INSERT INTO tokka.budgets (id, user_id, name, amount_usd, scope, webhook_secret)
				SELECT gen_random_uuid(), $2, 'B', 10, 'all', 'whsec_' || repeat('ab', 32) WHERE $1::uuid IS NOT NULL`,
			`INSERT INTO tokka.budget_deliveries (user_id, budget_id, alert_id, channel)
				SELECT $2, b.id, a.id, 'webhook' FROM tokka.budgets b, tokka.alerts a WHERE b.user_id = $2 AND a.user_id = $2 AND $1::uuid IS NOT NULL`,
		} {
			_, err := raw.Exec(q, conn, u.ID)
			require.NoError(t, err, q)
		}
		require.NoError(t, pgtest.SeedAuditChain(ctx, rawx, u.ID, 12))
	}
	d, err := postgres.Open(ctx, url, 2)
	require.NoError(t, err)
	defer d.Close()
	for _, u := range []tokka.User{alice, bob} {
		owned[u.ID] = map[string]int{}
		for _, table := range teamTables {
			var n int
			require.NoError(t, raw.QueryRow(`SELECT count(*) FROM tokka.`+table+` WHERE user_id = $1`, u.ID).Scan(&n))
			require.Positive(t, n, table)
			owned[u.ID][table] = n
		}
	}

	migrateTo(t, url, 22)
	b := &testBundle{db: d, sql: rawx, url: url}
	for _, u := range []tokka.User{alice, bob} {
		for _, table := range teamTables {
			var n int
			require.NoError(t, b.inRole(t, "authenticated", u, func(tx *sqlx.Tx) error {
				return tx.Get(&n, `SELECT count(*) FROM tokka.`+table+` WHERE team_id = $1`, u.ID)
			}))
			require.Equal(t, owned[u.ID][table], n, "%s reaches every row of %s it owned", u.Email, table)
			require.NoError(t, b.inRole(t, "authenticated", u, func(tx *sqlx.Tx) error {
				return tx.Get(&n, `SELECT count(*) FROM tokka.`+table+` WHERE team_id <> $1`, u.ID)
			}))
			require.Zero(t, n, "%s sees no one else's %s", u.Email, table)
		}
		teams, err := d.ListTeamsPage(ctx, u, nil, 100)
		require.NoError(t, err)
		require.Len(t, teams, 1)
		require.Equal(t, tokka.Team{ID: u.ID, Name: "Personal", Personal: true, Role: tokka.RoleOwner, CreatedAt: teams[0].CreatedAt}, teams[0])
		v, err := d.VerifyAuditChain(ctx, u, true)
		require.NoError(t, err)
		require.True(t, v.Intact)
		require.EqualValues(t, 12, v.Events)
	}
	// The chain goes on, with the acting user recorded.
	conns, err := d.ListConnectionsPage(ctx, alice, nil, 10)
	require.NoError(t, err)
	require.NoError(t, d.DeleteConnection(ctx, alice, conns[0].ID,
		tokka.AuditEvent{Action: tokka.ActionKeyDeleted, Outcome: tokka.OutcomeSuccess, Actor: "api:after"}))
	v, err := d.VerifyAuditChain(ctx, alice, false)
	require.NoError(t, err)
	require.True(t, v.Intact)
	require.EqualValues(t, 13, v.Events)

	downAgain()
	for table, n := range owned[bob.ID] {
		var m int
		require.NoError(t, raw.QueryRow(`SELECT count(*) FROM tokka.`+table+` WHERE user_id = $1`, bob.ID).Scan(&m))
		require.Equal(t, n, m, "down gives %s back", table)
	}
}
