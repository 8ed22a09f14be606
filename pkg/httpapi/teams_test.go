package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// createTeam makes a team owned by u through the API and returns its id.
func (b *testBundle) createTeam(t *testing.T, u user, name string) string {
	t.Helper()
	status, h, body := b.do(t, u, http.MethodPost, "/v1/teams", map[string]string{"name": name})
	require.Equal(t, http.StatusCreated, status, string(body))
	var team struct{ ID, Role string }
	require.NoError(t, json.Unmarshal(body, &team))
	require.Equal(t, "owner", team.Role)
	require.Equal(t, "/v1/teams/"+team.ID, h.Get("Location"))
	return team.ID
}

// invite has by invite email to team as role, and returns the
// invitation's id and token.
func (b *testBundle) invite(t *testing.T, by user, team, email, role string) (string, string) {
	t.Helper()
	status, _, body := b.do(t, by, http.MethodPost, "/v1/teams/"+team+"/invitations",
		map[string]string{"email": email, "role": role})
	require.Equal(t, http.StatusCreated, status, string(body))
	var inv struct{ ID, Token, Email, Role string }
	require.NoError(t, json.Unmarshal(body, &inv))
	require.Equal(t, strings.ToLower(email), inv.Email)
	require.Equal(t, role, inv.Role)
	require.Regexp(t, `^tki_[A-Za-z0-9_-]{43}$`, inv.Token)
	return inv.ID, inv.Token
}

// join has u accept the invitation with token.
func (b *testBundle) join(t *testing.T, u user, token, role string) {
	t.Helper()
	status, _, body := b.do(t, u, http.MethodPost, "/v1/invitations/"+token+"/accept", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var team struct{ Role string }
	require.NoError(t, json.Unmarshal(body, &team))
	require.Equal(t, role, team.Role)
}

// team is an owner's team with an admin and a viewer who joined by
// invitation, holding one synced connection the owner pasted.
type team struct {
	id, conn                      string
	owner, admin, viewer, outside user
}

func (b *testBundle) team(t *testing.T) team {
	t.Helper()
	tm := team{owner: b.newUser(t), admin: b.newUser(t), viewer: b.newUser(t), outside: b.newUser(t)}
	tm.id = b.createTeam(t, tm.owner, "Platform")
	_, tok := b.invite(t, tm.owner, tm.id, tm.admin.email, "admin")
	b.join(t, tm.admin, tok, "admin")
	_, tok = b.invite(t, tm.owner, tm.id, strings.ToUpper(tm.viewer.email), "viewer")
	b.join(t, tm.viewer, tok, "viewer")
	status, _, body := b.do(t, tm.owner, http.MethodPost, "/v1/connections?team_id="+tm.id,
		newConnBody(uniqueKey("sk-admin-teamkey")))
	require.Equal(t, http.StatusCreated, status, string(body))
	var c struct{ ID string }
	require.NoError(t, json.Unmarshal(body, &c))
	tm.conn = c.ID
	syncFixture(t, &testBundle{db: b.db, sql: b.sql}, tm.conn)
	return tm
}

// TestTeamMembersSeeOneSpendAndOnlyAdminsChangeIt is the role × route
// matrix over HTTP: every member reads the same answers, to the byte, on
// every read route; a viewer gets 403 on every mutation and an outsider 404
// on everything, and neither changes anything; an admin's mutations go
// through.
func TestTeamMembersSeeOneSpendAndOnlyAdminsChangeIt(t *testing.T) {
	t.Parallel()
	b := setup(t, liveSessions(), fromIP(uniqueLoopback()), configured(httpapi.Config{WebhookGuard: hookGuard()}))
	tm := b.team(t)
	q := "team_id=" + tm.id

	reads := []string{
		"/v1/connections?" + q,
		"/v1/connections/" + tm.conn + "?" + q,
		"/v1/connections/" + tm.conn + "/keys?" + q,
		"/v1/usage?from=2026-11-01&to=2026-11-02&group_by=day,model&" + q,
		"/v1/usage/export.csv?from=2026-11-01&to=2026-11-02&group_by=day,model&" + q,
		"/v1/audit-events?" + q,
		"/v1/alerts?" + q,
		"/v1/budgets?" + q,
	}
	for _, path := range reads {
		_, _, want := b.do(t, tm.owner, http.MethodGet, path, nil)
		for _, who := range []user{tm.admin, tm.viewer} {
			status, _, got := b.do(t, who, http.MethodGet, path, nil)
			require.Equal(t, http.StatusOK, status, "%s: %s", path, got)
			if !strings.HasPrefix(path, "/v1/audit-events") {
				require.Equal(t, string(want), string(got), "every member reads the same %s", path)
			}
		}
		status, h, got := b.do(t, tm.outside, http.MethodGet, path, nil)
		requireProblem(t, status, h, got, http.StatusNotFound, "an outsider reads "+path)
	}
	var usage struct {
		Data []struct {
			CostUSD string `json:"cost_usd"`
		} `json:"data"`
	}
	_, _, body := b.do(t, tm.viewer, http.MethodGet, "/v1/usage?from=2026-11-01&to=2026-11-02&group_by=model&"+q, nil)
	require.NoError(t, json.Unmarshal(body, &usage))
	require.NotEmpty(t, usage.Data, "the viewer sees the team's spend")

	before := b.teamSnapshot(t, tm.id)
	mutations := []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, "/v1/connections?" + q, newConnBody(uniqueKey("sk-admin-viewerpaste"))},
		{http.MethodPatch, "/v1/connections/" + tm.conn + "?" + q, map[string]any{"label": "renamed"}},
		{http.MethodPatch, "/v1/connections/" + tm.conn + "?" + q, map[string]any{"api_key": uniqueKey("sk-admin-viewerswap")}},
		{http.MethodPost, "/v1/connections/" + tm.conn + "/sync?" + q, nil},
		{http.MethodDelete, "/v1/connections/" + tm.conn + "?" + q, nil},
		{http.MethodPost, "/v1/budgets?" + q, map[string]any{"amount_usd": "10"}},
		{http.MethodPatch, "/v1/teams/" + tm.id, map[string]any{"name": "taken over"}},
		{http.MethodPost, "/v1/teams/" + tm.id + "/invitations", map[string]any{"email": "friend@example.com", "role": "viewer"}},
		{http.MethodPatch, "/v1/teams/" + tm.id + "/members/" + tm.viewer.id, map[string]any{"role": "owner"}},
		{http.MethodDelete, "/v1/teams/" + tm.id + "/members/" + tm.owner.id, nil},
		{http.MethodDelete, "/v1/teams/" + tm.id, nil},
	}
	for _, m := range mutations {
		status, h, resp := b.do(t, tm.viewer, m.method, m.path, m.body)
		requireProblem(t, status, h, resp, http.StatusForbidden, "a viewer: "+m.method+" "+m.path)
		status, h, resp = b.do(t, tm.outside, m.method, m.path, m.body)
		requireProblem(t, status, h, resp, http.StatusNotFound, "an outsider: "+m.method+" "+m.path)
	}
	require.Equal(t, before, b.teamSnapshot(t, tm.id), "a viewer or an outsider changed the team")

	// The admin manages keys and budgets, but not members or the team.
	status, _, resp := b.do(t, tm.admin, http.MethodPatch, "/v1/connections/"+tm.conn+"?"+q,
		map[string]any{"api_key": "sk-admin-ADMINREPLACED0123456789abcd"})
	require.Equal(t, http.StatusOK, status, string(resp))
	var blob string
	require.NoError(t, b.sql.Get(&blob, `SELECT sealed_key FROM tokka.connections WHERE id = $1`, tm.conn))
	key, err := b.kr.Open(blob, seal.Binding{TeamID: tm.id, ConnectionID: tm.conn, Provider: "openai"})
	require.NoError(t, err, "the new key is sealed to the team")
	require.Equal(t, "sk-admin-ADMINREPLACED0123456789abcd", string(key.Bytes()))
	key.Wipe()
	_, err = b.kr.Open(blob, seal.Binding{TeamID: tm.admin.id, ConnectionID: tm.conn, Provider: "openai"})
	require.Error(t, err, "not to the admin who pasted it")
	status, _, resp = b.do(t, tm.admin, http.MethodPost, "/v1/budgets?"+q, map[string]any{"amount_usd": "10"})
	require.Equal(t, http.StatusCreated, status, string(resp))
	status, _, resp = b.do(t, tm.admin, http.MethodPost, "/v1/teams/"+tm.id+"/invitations",
		map[string]any{"email": "boss@example.com", "role": "owner"})
	require.Equal(t, http.StatusForbidden, status, "an admin does not invite owners: %s", resp)
	status, _, resp = b.do(t, tm.admin, http.MethodPatch, "/v1/teams/"+tm.id+"/members/"+tm.viewer.id, map[string]any{"role": "admin"})
	require.Equal(t, http.StatusForbidden, status, "an admin does not change members: %s", resp)

	// Every member sees who did what in the team's log.
	var log struct {
		Data []struct {
			Action      string  `json:"action"`
			ActorUserID *string `json:"actor_user_id"`
		} `json:"data"`
	}
	_, _, body = b.do(t, tm.viewer, http.MethodGet, "/v1/audit-events?"+q, nil)
	require.NoError(t, json.Unmarshal(body, &log))
	byAction := map[string]string{}
	for _, ev := range log.Data {
		if ev.ActorUserID != nil {
			byAction[ev.Action] = *ev.ActorUserID
		}
	}
	require.Equal(t, tm.admin.id, byAction["key.replaced"])
	require.Equal(t, tm.owner.id, byAction["key.created"])
	require.Equal(t, tm.owner.id, byAction["team.created"])
	status, _, body = b.do(t, tm.viewer, http.MethodGet, "/v1/audit-events/verify?"+q, nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Contains(t, string(body), `"intact":true`)

	// A removed member sees nothing at once.
	status, _, resp = b.do(t, tm.owner, http.MethodDelete, "/v1/teams/"+tm.id+"/members/"+tm.viewer.id, nil)
	require.Equal(t, http.StatusNoContent, status, string(resp))
	status, h, resp := b.do(t, tm.viewer, http.MethodGet, "/v1/connections?"+q, nil)
	requireProblem(t, status, h, resp, http.StatusNotFound, "a removed member")
	status, _, resp = b.do(t, tm.viewer, http.MethodGet, "/v1/teams", nil)
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, string(resp), tm.id)
}

// teamSnapshot is everything of a team the API could change.
func (b *testBundle) teamSnapshot(t *testing.T, team string) string {
	t.Helper()
	var s string
	require.NoError(t, b.sql.Get(&s, `SELECT concat_ws(' | ',
		(SELECT jsonb_agg(jsonb_build_array(id, label, key_hint, sealed_key, key_set_at, last_sync_request_at) ORDER BY id)
		   FROM tokka.connections WHERE team_id = $1),
		(SELECT count(*) FROM tokka.budgets WHERE team_id = $1),
		(SELECT jsonb_agg(to_jsonb(x) ORDER BY id) FROM tokka.teams x WHERE id = $1),
		(SELECT jsonb_agg(to_jsonb(x) ORDER BY user_id) FROM tokka.team_members x WHERE team_id = $1),
		(SELECT count(*) FROM tokka.team_invitations WHERE team_id = $1),
		(SELECT count(*) FROM tokka.audit_events WHERE team_id = $1))`, team))
	return s
}

// TestInvitationsOverHTTP: a token works once, for the address it was made
// out to, and only with a confirmed email; it can be revoked; a malformed
// or unknown token is 404; the last owner cannot leave.
func TestInvitationsOverHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t, liveSessions(), fromIP(uniqueLoopback()))
	owner, guest, other := b.newUser(t), b.newUser(t), b.newUser(t)
	id := b.createTeam(t, owner, "Finance")

	_, tok := b.invite(t, owner, id, guest.email, "viewer")
	status, h, resp := b.do(t, other, http.MethodPost, "/v1/invitations/"+tok+"/accept", nil)
	requireProblem(t, status, h, resp, http.StatusNotFound, "another address")
	b.authSrv.Unconfirm(guest.id)
	status, h, resp = b.do(t, guest, http.MethodPost, "/v1/invitations/"+tok+"/accept", nil)
	requireProblem(t, status, h, resp, http.StatusForbidden, "an unconfirmed email")
	b.authSrv.Confirm(guest.id)
	b.join(t, guest, tok, "viewer")
	status, h, resp = b.do(t, guest, http.MethodPost, "/v1/invitations/"+tok+"/accept", nil)
	requireProblem(t, status, h, resp, http.StatusNotFound, "used once already")
	status, h, resp = b.do(t, guest, http.MethodPost, "/v1/invitations/not-a-token/accept", nil)
	requireProblem(t, status, h, resp, http.StatusNotFound, "malformed")

	invID, tok := b.invite(t, owner, id, other.email, "admin")
	// The api keeps only the token's hash, and the token sealed for the
	// syncer to mail: bound to the team and the invitation.
	var sealed string
	require.NoError(t, b.sql.Get(&sealed, `SELECT token_sealed FROM tokka.team_invitations WHERE id = $1`, invID))
	opened, err := b.kr.Open(sealed, seal.Binding{TeamID: id, ConnectionID: invID, Provider: tokka.InvitationBinding})
	require.NoError(t, err)
	require.Equal(t, tok, string(opened.Bytes()))
	opened.Wipe()
	_, err = b.kr.Open(sealed, seal.Binding{TeamID: id, ConnectionID: invID, Provider: tokka.OpenAI})
	require.Error(t, err, "an invitation's blob never opens as a provider key")
	status, _, resp = b.do(t, guest, http.MethodDelete, "/v1/teams/"+id+"/invitations/"+invID, nil)
	require.Equal(t, http.StatusForbidden, status, "a viewer does not revoke: %s", resp)
	status, _, resp = b.do(t, owner, http.MethodDelete, "/v1/teams/"+id+"/invitations/"+invID, nil)
	require.Equal(t, http.StatusNoContent, status, string(resp))
	status, h, resp = b.do(t, other, http.MethodPost, "/v1/invitations/"+tok+"/accept", nil)
	requireProblem(t, status, h, resp, http.StatusNotFound, "revoked")
	require.NotContains(t, b.logs.String(), tok, "tokens are never logged")

	status, h, resp = b.do(t, owner, http.MethodDelete, "/v1/teams/"+id+"/members/"+owner.id, nil)
	requireProblem(t, status, h, resp, http.StatusConflict, "the last owner leaves")
	status, _, resp = b.do(t, guest, http.MethodDelete, "/v1/teams/"+id+"/members/"+guest.id, nil)
	require.Equal(t, http.StatusNoContent, status, "a viewer leaves: %s", resp)

	// Every user has a personal team, made on first use, whose id is theirs;
	// it cannot be deleted.
	status, _, resp = b.do(t, owner, http.MethodGet, "/v1/teams", nil)
	require.Equal(t, http.StatusOK, status)
	var teams struct {
		Data []struct {
			ID       string `json:"id"`
			Personal bool   `json:"personal"`
			Role     string `json:"role"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(resp, &teams))
	require.Len(t, teams.Data, 2)
	for _, tm := range teams.Data {
		require.Equal(t, tm.ID == owner.id, tm.Personal, "the personal team has the user's id")
		require.Equal(t, "owner", tm.Role)
	}
	status, h, resp = b.do(t, owner, http.MethodDelete, "/v1/teams/"+owner.id, nil)
	requireProblem(t, status, h, resp, http.StatusConflict, "a personal team")
	status, _, resp = b.do(t, owner, http.MethodDelete, "/v1/teams/"+id, nil)
	require.Equal(t, http.StatusNoContent, status, string(resp))
}

// TestTeamsShareOneMutationBudget: the members of a team spend one budget
// of changes in it, besides their own; their personal teams are theirs.
func TestTeamsShareOneMutationBudget(t *testing.T) {
	t.Parallel()
	b := setup(t, fromIP(uniqueLoopback()), configured(httpapi.Config{
		RateLimits: httpapi.RateLimits{PerUser: 100, PerIP: 100000, PerTeam: 3, Window: testWindow}}))
	owner, admin := b.newUser(t), b.newUser(t)
	id := b.createTeam(t, owner, "Ops")
	_, tok := b.invite(t, owner, id, admin.email, "admin") // the team's first change
	b.join(t, admin, tok, "admin")
	budget := map[string]any{"amount_usd": "10"}
	status, h, resp := b.do(t, admin, http.MethodPost, "/v1/budgets?team_id="+id, budget)
	require.Equal(t, http.StatusCreated, status, string(resp))
	require.Equal(t, "3", h.Get("RateLimit-Limit"), "the team's budget is the tighter one")
	require.Equal(t, "1", h.Get("RateLimit-Remaining"))
	status, _, resp = b.do(t, owner, http.MethodPost, "/v1/budgets?team_id="+id, budget)
	require.Equal(t, http.StatusCreated, status, string(resp))
	status, h, resp = b.do(t, admin, http.MethodPost, "/v1/budgets?team_id="+id, budget)
	requireProblem(t, status, h, resp, http.StatusTooManyRequests, "the team's budget is spent")
	require.NotEmpty(t, h.Get("Retry-After"))
	status, _, resp = b.do(t, admin, http.MethodPost, "/v1/budgets", budget)
	require.Equal(t, http.StatusCreated, status, "the admin's personal team is another budget: %s", resp)
	outsider := b.newUser(t)
	status, h, resp = b.do(t, outsider, http.MethodPost, "/v1/budgets?team_id="+id, budget)
	requireProblem(t, status, h, resp, http.StatusNotFound, "an outsider spends nothing of it")
}

// TestEveryMutationInATeamNeedsAnAdmin walks the router's own routes, so a
// route added later is covered: every /v1 mutation that acts in a team
// (team_id, or the team in the path) is 403 for a viewer and 404 for
// someone outside the team, and changes nothing.
func TestEveryMutationInATeamNeedsAnAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t, liveSessions(), fromIP(uniqueLoopback()), configured(httpapi.Config{WebhookGuard: hookGuard()}))
	tm := b.team(t)
	takesTeam := httpapi.QueryParameters()
	before := b.teamSnapshot(t, tm.id)
	walked := 0
	for _, r := range b.e.Routes() {
		if !strings.HasPrefix(r.Path, "/v1/") || readOnlyMethod(r.Method) {
			continue
		}
		route := r.Method + " " + r.Path
		inPath := strings.Contains(r.Path, ":team")
		inQuery := false
		for _, p := range takesTeam[route] {
			inQuery = inQuery || p.Name == "team_id"
		}
		if !inPath && !inQuery {
			continue // acts in no team: POST /v1/teams, accepting an invitation
		}
		// The team's connection, or ids of no one's: the team check
		// comes before any lookup.
		id := tm.conn
		switch {
		case strings.HasPrefix(r.Path, "/v1/alerts/"):
			id = "1"
		case strings.HasPrefix(r.Path, "/v1/budgets/"):
			id = uuid.NewString()
		}
		path := strings.NewReplacer(":team", tm.id, ":user", tm.owner.id, ":invitation", uuid.NewString(),
			":id", id).Replace(r.Path)
		if inQuery {
			path += "?team_id=" + tm.id
		}
		body := wellFormed[route]
		status, h, resp := b.do(t, tm.viewer, r.Method, path, body)
		requireProblem(t, status, h, resp, http.StatusForbidden, "a viewer: "+route)
		status, h, resp = b.do(t, tm.outside, r.Method, path, body)
		requireProblem(t, status, h, resp, http.StatusNotFound, "an outsider: "+route)
		walked++
	}
	require.GreaterOrEqual(t, walked, 14, "the walk saw the team's mutations (14 when it was written)")
	require.Equal(t, before, b.teamSnapshot(t, tm.id), "a viewer or an outsider changed the team")
}

func readOnlyMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }
