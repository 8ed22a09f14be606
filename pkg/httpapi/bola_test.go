package httpapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"
)

// bolaCase is one request user B makes against one of user A's objects.
// route is the Echo route template; the test fails when a /v1 route with a
// path parameter is missing from the matrix, so a new endpoint cannot skip
// this check.
type bolaCase struct {
	method, route string
	kind          string // which of A's objects :id names: conn, alert, budget, team, invitation (its token)
	body          any
}

var bolaMatrix = []bolaCase{
	{http.MethodGet, "/v1/connections/:id", "conn", nil},
	{http.MethodPatch, "/v1/connections/:id", "conn", map[string]string{"label": "pwned"}},
	{http.MethodPatch, "/v1/connections/:id", "conn", map[string]string{"api_key": "sk-admin-bolaREPLACE0123456789abcd"}},
	{http.MethodDelete, "/v1/connections/:id", "conn", nil},
	{http.MethodPost, "/v1/connections/:id/sync", "conn", nil},
	{http.MethodGet, "/v1/connections/:id/keys", "conn", nil},
	{http.MethodHead, "/v1/connections/:id/keys", "conn", nil},
	{http.MethodPost, "/v1/alerts/:id/acknowledge", "alert", nil},
	{http.MethodGet, "/v1/budgets/:id", "budget", nil},
	{http.MethodPatch, "/v1/budgets/:id", "budget", map[string]string{"name": "pwned", "amount_usd": "1"}},
	{http.MethodDelete, "/v1/budgets/:id", "budget", nil},
	{http.MethodGet, "/v1/budgets/:id/deliveries", "budget", nil},
	{http.MethodHead, "/v1/connections/:id", "conn", nil},
	{http.MethodHead, "/v1/budgets/:id", "budget", nil},
	{http.MethodHead, "/v1/budgets/:id/deliveries", "budget", nil},
	{http.MethodGet, "/v1/teams/:team", "team", nil},
	{http.MethodHead, "/v1/teams/:team", "team", nil},
	{http.MethodPatch, "/v1/teams/:team", "team", map[string]string{"name": "pwned"}},
	{http.MethodDelete, "/v1/teams/:team", "team", nil},
	{http.MethodGet, "/v1/teams/:team/members", "team", nil},
	{http.MethodHead, "/v1/teams/:team/members", "team", nil},
	{http.MethodPatch, "/v1/teams/:team/members/:user", "team", map[string]string{"role": "viewer"}},
	{http.MethodDelete, "/v1/teams/:team/members/:user", "team", nil},
	{http.MethodGet, "/v1/teams/:team/invitations", "team", nil},
	{http.MethodHead, "/v1/teams/:team/invitations", "team", nil},
	{http.MethodPost, "/v1/teams/:team/invitations", "team", map[string]string{"email": "mallory@example.com", "role": "owner"}},
	{http.MethodDelete, "/v1/teams/:team/invitations/:invitation", "team", nil},
	{http.MethodGet, "/v1/teams/:team/invitations/:invitation", "team", nil},
	{http.MethodHead, "/v1/teams/:team/invitations/:invitation", "team", nil},
	{http.MethodPost, "/v1/invitations/:token/accept", "invitation", nil},
}

var createdAt = regexp.MustCompile(`"created_at":"[^"]*"`)

// TestBOLAMatrix: for every endpoint and method that takes an object id,
// user B gets exactly what a missing id gets (404, same body but for the
// request id) when naming user A's object, and A's object is unchanged
// afterwards. Ids inside query filters and bodies leak nothing either, and
// every list endpoint shows B exactly what it shows a brand-new user.
func TestBOLAMatrix(t *testing.T) {
	t.Parallel()
	b := setup(t, fromIP(uniqueLoopback())) // its many mutations spend no other test's per-IP budget
	alice, bob, carol := b.newUser(t), b.newUser(t), b.newUser(t)
	conn := b.connect(t, alice)
	syncFixture(t, &testBundle{db: b.db, sql: b.sql}, conn)
	var alert int64
	require.NoError(t, b.sql.Get(&alert, `INSERT INTO tokka.alerts (team_id, kind, dedup_key, title)
		VALUES ($1, 'spend_anomaly', 'bola-test', 'A''s alert') RETURNING id`, alice.id))
	status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets", map[string]string{"name": "A's budget", "amount_usd": "100"})
	require.Equal(t, http.StatusCreated, status, string(body))
	var budget struct{ ID string }
	require.NoError(t, json.Unmarshal(body, &budget))

	team := b.createTeam(t, alice, "A's team")
	invitation, token := b.invite(t, alice, team, "alices-friend@example.com", "admin")
	ids := map[string]string{"conn": conn, "alert": fmt.Sprint(alert), "budget": budget.ID, "team": team, "invitation": token}
	missing := map[string]string{"conn": uuid.NewString(), "alert": "9223372036854775000", "budget": uuid.NewString(),
		"team": uuid.NewString(), "invitation": "tki_" + strings.Repeat("B", 43)}
	// What A sees of each object before B tries anything.
	owned := map[string]string{
		"conn":    "/v1/connections/" + conn,
		"budget":  "/v1/budgets/" + budget.ID,
		"team":    "/v1/teams/" + team,
		"members": "/v1/teams/" + team + "/members",
		"invites": "/v1/teams/" + team + "/invitations",
	}
	snapshot := func() map[string]string {
		out := map[string]string{}
		for k, path := range owned {
			status, _, body := b.do(t, alice, http.MethodGet, path, nil)
			require.Equal(t, http.StatusOK, status, path)
			var m map[string]any
			require.NoError(t, json.Unmarshal(body, &m))
			delete(m, "status") // a budget's month-to-date figures are computed on read
			raw, _ := json.Marshal(m)
			out[k] = string(raw)
		}
		var ack *string
		require.NoError(t, b.sql.Get(&ack, `SELECT acknowledged_at::text FROM tokka.alerts WHERE id = $1`, alert))
		out["alert"] = fmt.Sprint(ack)
		return out
	}
	before := snapshot()

	covered := map[string]bool{}
	for _, tc := range bolaMatrix {
		covered[tc.method+" "+tc.route] = true
		name := tc.method + " " + tc.route
		path := func(id string) string {
			p := strings.Replace(tc.route, ":id", id, 1)
			p = strings.Replace(p, ":team", id, 1)
			p = strings.Replace(p, ":token", id, 1)
			p = strings.Replace(p, ":user", alice.id, 1)
			return strings.Replace(p, ":invitation", invitation, 1)
		}
		sA, hA, bodyA := b.do(t, bob, tc.method, path(ids[tc.kind]), tc.body)
		sM, _, bodyM := b.do(t, bob, tc.method, path(missing[tc.kind]), tc.body)
		require.Equal(t, http.StatusNotFound, sA, name+" "+string(bodyA))
		require.Equal(t, sM, sA, name)
		require.Equal(t, stripRequestID(bodyM), stripRequestID(bodyA), name+": another user's id must look exactly like a missing one")
		require.Equal(t, "application/problem+json", hA.Get("Content-Type"))
		if len(ids[tc.kind]) == 36 { // a uuid; a small integer id would match any number
			require.NotContains(t, stripRequestID(bodyA), ids[tc.kind])
		}
	}
	require.Equal(t, before, snapshot(), "B changed A's objects")

	// Every /v1 route with a path parameter must be in the matrix.
	var uncovered []string
	for _, r := range b.e.Routes() {
		if strings.HasPrefix(r.Path, "/v1/") && strings.Contains(r.Path, ":") && !covered[r.Method+" "+r.Path] {
			uncovered = append(uncovered, r.Method+" "+r.Path)
		}
	}
	sort.Strings(uncovered)
	require.Empty(t, uncovered, "add these routes to bolaMatrix in bola_test.go")

	// Ids of A's objects inside filters and bodies.
	for _, tc := range []struct {
		method, path string
		body         func(id string) any
	}{
		{http.MethodGet, "/v1/usage?from=2026-10-01&to=2026-11-30&group_by=day,model&connection=%s", nil},
		{http.MethodGet, "/v1/usage/export.csv?from=2026-10-01&to=2026-11-30&group_by=day&connection=%s", nil},
		{http.MethodPost, "/v1/budgets", func(id string) any {
			return map[string]string{"name": "x", "amount_usd": "1", "scope": "connection", "connection_id": id}
		}},
	} {
		send := func(id string) (int, []byte) {
			var body any
			if tc.body != nil {
				body = tc.body(id)
			}
			path := tc.path
			if strings.Contains(path, "%s") {
				path = fmt.Sprintf(path, id)
			}
			status, _, resp := b.do(t, bob, tc.method, path, body)
			return status, resp
		}
		sA, bodyA := send(conn)
		sM, bodyM := send(missing["conn"])
		require.Equal(t, sM, sA, tc.path)
		// The response may echo the id the caller sent; apart from that it
		// must be the same for A's connection and for no connection.
		require.Equal(t, strings.ReplaceAll(stripRequestID(bodyM), missing["conn"], "<id>"),
			strings.ReplaceAll(stripRequestID(bodyA), conn, "<id>"), tc.path)
	}

	// Every list endpoint shows B what it shows a new user: nothing of A's.
	for _, r := range b.e.Routes() {
		if r.Method != http.MethodGet || !strings.HasPrefix(r.Path, "/v1/") || strings.Contains(r.Path, ":") || r.Path == "/v1/me" {
			continue
		}
		path := r.Path
		if strings.HasPrefix(path, "/v1/usage") && path != "/v1/usage/summary" {
			path += "?from=2026-10-01&to=2026-11-30"
		}
		sB, _, bodyB := b.do(t, bob, http.MethodGet, path, nil)
		sC, _, bodyC := b.do(t, carol, http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, sB, path+" "+string(bodyB))
		require.Equal(t, sC, sB, path)
		if path == "/v1/teams" {
			// Each lists their own personal team: the same but for its
			// id (their own) and when it was made.
			bodyB = []byte(createdAt.ReplaceAllString(strings.ReplaceAll(string(bodyB), bob.id, "<me>"), "<at>"))
			bodyC = []byte(createdAt.ReplaceAllString(strings.ReplaceAll(string(bodyC), carol.id, "<me>"), "<at>"))
		}
		require.Equal(t, stripRequestID(bodyC), stripRequestID(bodyB), path)
		require.NotContains(t, string(bodyB), conn, path)
		require.NotContains(t, string(bodyB), budget.ID, path)
	}
}

// TestRLSMatrix repeats the matrix in SQL, as role authenticated with B's
// claims, for every table in schema tokka (including tables added after
// this test was written): row-level security is enabled and forced; B
// sees none of A's rows; B's UPDATE and DELETE touch none of them (or are
// refused outright); and B cannot INSERT a row in A's name.
func TestRLSMatrix(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, bob := b.newUser(t), b.newUser(t)
	conn := b.connect(t, alice)
	syncFixture(t, &testBundle{db: b.db, sql: b.sql}, conn)
	_, err := b.sql.Exec(`INSERT INTO tokka.alerts (team_id, kind, dedup_key, title) VALUES ($1, 'spend_anomaly', 'rls-test', 't')`, alice.id)
	require.NoError(t, err)
	status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets", map[string]string{"name": "A", "amount_usd": "100"})
	require.Equal(t, http.StatusCreated, status, string(body))

	var tables []struct {
		Name   string `db:"relname"`
		RLS    bool   `db:"relrowsecurity"`
		Forced bool   `db:"relforcerowsecurity"`
	}
	require.NoError(t, b.sql.Select(&tables, `
		SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'tokka' AND c.relkind IN ('r', 'p') ORDER BY c.relname`))
	require.NotEmpty(t, tables)

	// asBob runs one statement as role authenticated with Bob's claims and
	// returns the rows it affected, or its error. Everything is rolled back.
	asBob := func(query string, args ...any) (int64, error) {
		tx, err := b.sql.Beginx()
		require.NoError(t, err)
		defer tx.Rollback() //nolint:errcheck
		_, err = tx.Exec(`SELECT set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)`,
			`{"sub":"`+bob.id+`","role":"authenticated","aud":"authenticated"}`)
		require.NoError(t, err)
		if strings.HasPrefix(query, "SELECT") {
			var n int64
			err := tx.Get(&n, query, args...)
			return n, err
		}
		res, err := tx.Exec(query, args...)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	}
	denied := func(err error) bool {
		var pqErr *pq.Error
		return err != nil && errors.As(err, &pqErr) && pqErr.Code == "42501"
	}

	ownedRows := []string{}
	for _, tb := range tables {
		name := "tokka." + pq.QuoteIdentifier(tb.Name)
		require.True(t, tb.RLS, "%s: row-level security is not enabled", name)
		require.True(t, tb.Forced, "%s: row-level security is not forced", name)

		var cols []string // the ones an UPDATE may name at all
		require.NoError(t, b.sql.Select(&cols, `SELECT column_name FROM information_schema.columns
			WHERE table_schema = 'tokka' AND table_name = $1 AND is_identity = 'NO' AND is_generated = 'NEVER'
			ORDER BY column_name <> 'team_id', ordinal_position`, tb.Name))
		hasUser := contains(cols, "team_id")
		var aliceRows int64
		if hasUser {
			require.NoError(t, b.sql.Get(&aliceRows, `SELECT count(*) FROM `+name+` WHERE team_id = $1`, alice.id))
		}

		// SELECT: nothing of A's is visible (tables without team_id are
		// either private to the owner or not A's data at all).
		if hasUser {
			n, err := asBob(`SELECT count(*) FROM `+name+` WHERE team_id = $1`, alice.id)
			require.True(t, err == nil || denied(err), "%s: %v", name, err)
			require.Zero(t, n, "%s: B sees A's rows", name)
			n, err = asBob(`SELECT count(*) FROM ` + name)
			require.True(t, err == nil || denied(err), "%s: %v", name, err)
			require.Zero(t, n, "%s: B sees rows that are not B's", name)
		}
		// UPDATE and DELETE: zero rows or refused.
		col := pq.QuoteIdentifier(cols[0])
		for _, q := range []string{`UPDATE ` + name + ` SET ` + col + ` = ` + col, `DELETE FROM ` + name} {
			n, err := asBob(q)
			require.True(t, err == nil || denied(err), "%s: %s: %v", name, q, err)
			require.Zero(t, n, "%s: %s touched rows B does not own", name, q)
		}
		// INSERT in A's name: refused by privilege or by policy, never
		// stopped only by a constraint further down the line.
		var ins string
		if hasUser {
			ins = `INSERT INTO ` + name + ` (team_id) VALUES ('` + alice.id + `')`
		} else {
			ins = `INSERT INTO ` + name + ` DEFAULT VALUES`
		}
		_, err := asBob(ins)
		require.True(t, denied(err), "%s: B's INSERT in A's name was not refused by privilege or policy: %v", name, err)

		// A's rows are all still there (each statement was rolled back
		// anyway; this guards against a test that forgot to).
		if hasUser {
			var after int64
			require.NoError(t, b.sql.Get(&after, `SELECT count(*) FROM `+name+` WHERE team_id = $1`, alice.id))
			require.Equal(t, aliceRows, after, name)
			ownedRows = append(ownedRows, fmt.Sprintf("%s:%d", tb.Name, aliceRows))
		}
	}
	// The matrix is not vacuous: A owns rows in the main user tables.
	for _, want := range []string{"connections", "usage_daily", "cost_daily", "audit_events", "alerts", "budgets"} {
		found := false
		for _, v := range ownedRows {
			if strings.HasPrefix(v, want+":") && !strings.HasSuffix(v, ":0") {
				found = true
			}
		}
		require.True(t, found, "%s has no rows of A's to protect: %v", want, ownedRows)
	}
	// Views would bypass RLS unless security_invoker; there must be none
	// that are not.
	var views []string
	require.NoError(t, b.sql.Select(&views, `
		SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'tokka' AND c.relkind IN ('v', 'm')
		  AND NOT coalesce(c.reloptions @> ARRAY['security_invoker=true'], false)`))
	require.Empty(t, views, "views in schema tokka must be security_invoker")
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
