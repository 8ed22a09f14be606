package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTeamStory walks issue 15's story against the real binaries: an owner
// pastes a key into a team and invites an admin and a viewer, who accept;
// the viewer sees the same usage to the cent but gets 403 on every mutation,
// and the same refusal when the statements run straight in SQL as role
// authenticated with the viewer's claims; the admin replaces the key, which
// the syncer opens (it is sealed to the team); every member sees every
// decryption in the team's log; a removed member at once sees nothing.
func TestTeamStory(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	owner, admin, viewer := s.newUser(t), s.newUser(t), s.newUser(t)
	email := func(u user) string { return u.id[:8] + "@example.com" }

	var team struct{ ID string }
	require.Equal(t, http.StatusCreated, s.call(t, owner, http.MethodPost, "/v1/teams", map[string]string{"name": "Platform"}, &team))
	q := "team_id=" + team.ID
	firstKey := "sk-admin-e2eTEAMfirst" + randomHex(8)
	var conn connection
	require.Equal(t, http.StatusCreated, s.call(t, owner, http.MethodPost, "/v1/connections?"+q,
		map[string]string{"provider": "openai", "api_key": firstKey}, &conn))
	for _, j := range []struct {
		u    user
		role string
	}{{admin, "admin"}, {viewer, "viewer"}} {
		var inv struct{ Token string }
		require.Equal(t, http.StatusCreated, s.call(t, owner, http.MethodPost, "/v1/teams/"+team.ID+"/invitations",
			map[string]string{"email": email(j.u), "role": j.role}, &inv))
		var joined struct{ ID, Role string }
		require.Equal(t, http.StatusOK, s.call(t, j.u, http.MethodPost, "/v1/invitations/"+inv.Token+"/accept", nil, &joined))
		require.Equal(t, team.ID, joined.ID)
		require.Equal(t, j.role, joined.Role)
	}
	s.waitInTeam(t, viewer, conn.ID, q, func(c connection) bool { return c.Status == "active" })

	// One spend, to the cent, for everyone in the team.
	w := time.Now().UTC().AddDate(0, 0, -30).Format(time.DateOnly)
	usage := "/v1/usage?from=" + w + "&to=" + time.Now().UTC().Format(time.DateOnly) + "&group_by=day,model&" + q
	var ownerUsage, viewerUsage struct {
		Data []struct {
			Day, Model string
			CostUSD    string `json:"cost_usd"`
		}
	}
	require.Equal(t, http.StatusOK, s.call(t, owner, http.MethodGet, usage, nil, &ownerUsage))
	require.Equal(t, http.StatusOK, s.call(t, viewer, http.MethodGet, usage, nil, &viewerUsage))
	require.NotEmpty(t, ownerUsage.Data)
	require.Equal(t, ownerUsage, viewerUsage)

	// The viewer changes nothing, over HTTP or straight in SQL.
	for _, m := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, "/v1/connections?" + q, map[string]string{"provider": "openai", "api_key": "sk-admin-e2eVIEWER" + randomHex(8)}},
		{http.MethodPatch, "/v1/connections/" + conn.ID + "?" + q, map[string]string{"label": "mine now"}},
		{http.MethodPatch, "/v1/connections/" + conn.ID + "?" + q, map[string]string{"api_key": "sk-admin-e2eVIEWER" + randomHex(8)}},
		{http.MethodDelete, "/v1/connections/" + conn.ID + "?" + q, nil},
		{http.MethodPost, "/v1/connections/" + conn.ID + "/sync?" + q, nil},
		{http.MethodPost, "/v1/budgets?" + q, map[string]string{"amount_usd": "5"}},
		{http.MethodPost, "/v1/teams/" + team.ID + "/invitations", map[string]string{"email": "x@example.com", "role": "admin"}},
		{http.MethodDelete, "/v1/teams/" + team.ID + "/members/" + owner.id, nil},
	} {
		require.Equal(t, http.StatusForbidden, s.call(t, viewer, m.method, m.path, m.body, nil), "%s %s", m.method, m.path)
	}
	db := s.owner(t)
	for _, stmt := range []string{
		`UPDATE tokka.connections SET label = 'mine now' WHERE team_id = '` + team.ID + `'`,
		`DELETE FROM tokka.connections WHERE team_id = '` + team.ID + `'`,
		`DELETE FROM tokka.budgets WHERE team_id = '` + team.ID + `'`,
		`UPDATE tokka.alerts SET acknowledged_at = now() WHERE team_id = '` + team.ID + `'`,
		`SELECT 1 WHERE tokka.replace_connection_key('` + conn.ID + `', NULL, 'h', 'v2:00')`,
		`INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key)
			VALUES (gen_random_uuid(), '` + team.ID + `', 'openai', 'x', 'h', 'v2:00')`,
		`INSERT INTO tokka.team_members (team_id, user_id, role) VALUES ('` + team.ID + `', '` + viewer.id + `', 'owner')`,
	} {
		tx, err := db.BeginTxx(context.Background(), nil)
		require.NoError(t, err)
		_, err = tx.Exec(`SELECT set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)`,
			`{"sub":"`+viewer.id+`","role":"authenticated","email":"`+email(viewer)+`"}`)
		require.NoError(t, err)
		var n int64
		res, err := tx.Exec(stmt)
		if err == nil {
			n, _ = res.RowsAffected()
		}
		require.NoError(t, tx.Rollback())
		require.True(t, err != nil || n == 0, "as the viewer, in SQL: %s changed %d rows", stmt, n)
	}

	// The admin replaces the key; the syncer opens it, sealed to the team.
	secondKey := "sk-admin-e2eTEAMsecond" + randomHex(8)
	require.Equal(t, http.StatusOK, s.call(t, admin, http.MethodPatch, "/v1/connections/"+conn.ID+"?"+q,
		map[string]string{"api_key": secondKey}, nil))
	s.waitInTeam(t, viewer, conn.ID, q, func(c connection) bool {
		return c.Status == "active" && strings.HasSuffix(c.KeyHint, secondKey[len(secondKey)-4:])
	})
	var log struct {
		Data []struct {
			Action, Outcome string
			ActorUserID     *string `json:"actor_user_id"`
		}
	}
	require.Equal(t, http.StatusOK, s.call(t, viewer, http.MethodGet, "/v1/audit-events?limit=200&"+q, nil, &log))
	seen := map[string]int{}
	for _, ev := range log.Data {
		seen[ev.Action+":"+ev.Outcome]++
		if ev.Action == "key.replaced" {
			require.Equal(t, admin.id, *ev.ActorUserID)
		}
	}
	require.GreaterOrEqual(t, seen["key.decrypted:success"], 2, "every member sees both keys' decryptions: %v", seen)
	require.Equal(t, 1, seen["key.replaced:success"])
	require.Equal(t, 2, seen["invitation.accepted:success"])

	// A removed member sees nothing, at once.
	require.Equal(t, http.StatusNoContent, s.call(t, owner, http.MethodDelete, "/v1/teams/"+team.ID+"/members/"+viewer.id, nil, nil))
	require.Equal(t, http.StatusNotFound, s.call(t, viewer, http.MethodGet, usage, nil, nil))
	require.Equal(t, http.StatusNotFound, s.call(t, viewer, http.MethodGet, "/v1/connections/"+conn.ID+"?"+q, nil, nil))

	for _, k := range []string{firstKey, secondKey} {
		for _, p := range []*proc{s.api, s.syncer, s.fake} {
			require.NotContains(t, p.out.String(), k[len(k)-12:])
		}
	}
}

// waitInTeam polls one of a team's connections until done says so.
func (s *stack) waitInTeam(t *testing.T, u user, id, q string, done func(connection) bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var c connection
		require.Equal(t, http.StatusOK, s.call(t, u, http.MethodGet, "/v1/connections/"+id+"?"+q, nil, &c))
		if done(c) {
			return
		}
		require.True(t, time.Now().Before(deadline), "connection %s is %+v after 60s", id, c)
		time.Sleep(200 * time.Millisecond)
	}
}
