package e2e

import (
	"io"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/notify/notifytest"
)

// incident runs `syncer incident args…` with env added to the syncer's
// database URL, returning its combined output and exit status.
func (s *stack) incident(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(s.bin+"/syncer", append([]string{"incident"}, args...)...)
	cmd.Env = append(append(s.base, "DATABASE_URL="+withUser(s.dbURL, "tokka_sync")), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, string(out))
		return string(out), ee.ExitCode()
	}
	return string(out), 0
}

// TestIncidentResponse is issue 8's breach tooling on the real binaries: a
// window in which some users' keys were stored or decrypted, users before
// and after it, and the whole runbook — list, a refused notify before
// quarantine, quarantine (twice), notify --dry-run, notify (twice) — checked
// against what each user sees through the API, the audit log and the mail
// the local SMTP receiver got.
func TestIncidentResponse(t *testing.T) {
	t.Parallel()
	s := startStackWith(t, stackOptions{metrics: true})
	alice, bob, carol, dave, erin, frank := s.newUser(t), s.newUser(t), s.newUser(t), s.newUser(t), s.newUser(t), s.newUser(t)
	add := func(u user, provider, key string) string {
		var c connection
		require.Equal(t, http.StatusCreated, s.call(t, u, http.MethodPost, "/v1/connections",
			map[string]string{"provider": provider, "label": "org of " + u.id[:8], "api_key": key}, &c))
		return c.ID
	}

	// Before the window: carol's connection comes and goes; erin's and
	// frank's are created and stay.
	carolConn := add(carol, "openai", "sk-admin-incCAROL"+randomHex(8))
	erinConn := add(erin, "anthropic", "sk-ant-admin01-incERIN"+randomHex(8))
	frankConn := add(frank, "openai", "sk-admin-incFRANK"+randomHex(8))
	s.waitFor(t, carol, carolConn, "active")
	require.Equal(t, http.StatusNoContent, s.call(t, carol, http.MethodDelete, "/v1/connections/"+carolConn, nil, nil))
	s.waitFor(t, erin, erinConn, "active")
	s.waitFor(t, frank, frankConn, "active")
	time.Sleep(50 * time.Millisecond)

	from := time.Now().UTC()
	// In the window: alice's keys are decrypted; bob's connection is added
	// and deleted.
	aliceOpenAI := add(alice, "openai", "sk-admin-incALICE"+randomHex(8))
	aliceAnthropic := add(alice, "anthropic", "sk-ant-admin01-incALICE"+randomHex(8))
	s.waitFor(t, alice, aliceOpenAI, "active")
	s.waitFor(t, alice, aliceAnthropic, "active")
	bobConn := add(bob, "openai", "sk-admin-incBOB"+randomHex(8))
	require.Equal(t, http.StatusNoContent, s.call(t, bob, http.MethodDelete, "/v1/connections/"+bobConn, nil, nil))
	time.Sleep(50 * time.Millisecond)
	to := time.Now().UTC()
	time.Sleep(50 * time.Millisecond)

	// After the window: dave connects, frank replaces his key.
	daveConn := add(dave, "openai", "sk-admin-incDAVE"+randomHex(8))
	s.waitFor(t, dave, daveConn, "active")
	require.Equal(t, http.StatusOK, s.call(t, frank, http.MethodPatch, "/v1/connections/"+frankConn,
		map[string]string{"api_key": "sk-admin-incFRANKnew" + randomHex(8)}, nil))

	window := []string{"--from", from.Format(time.RFC3339Nano), "--to", to.Format(time.RFC3339Nano), "--ref", "INC-E2E-1"}
	affected := map[string][]string{ // user → connections
		alice.id: {aliceOpenAI, aliceAnthropic}, bob.id: {bobConn}, erin.id: {erinConn}, frank.id: {frankConn},
	}
	users := map[string]user{alice.id: alice, bob.id: bob, erin.id: erin, frank.id: frank}

	// list names exactly the affected users and connections.
	out, code := s.incident(t, nil, append([]string{"list"}, window...)...)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "5 connections of 4 users affected")
	for u, conns := range affected {
		for _, c := range conns {
			require.Regexp(t, regexp.MustCompile(`(?m)^`+u+` +`+c+` `), out)
		}
	}
	for _, absent := range []string{carol.id, carolConn, dave.id, daveConn} {
		require.NotContains(t, out, absent)
	}
	require.Regexp(t, `(?m)^`+frank.id+` .* replaced after the window$`, out)
	require.Regexp(t, `(?m)^`+bob.id+` .* deleted `, out)

	// The Auth server answers its admin API like GoTrue (which refuses a
	// service token naming a user), and the service key is minted the way
	// the runbook says for a self-hosted one: `devtoken -role service_role`.
	authServer := authtest.NewAuthServer(s.jwtSecret)
	emails := map[string]string{}
	for _, u := range []user{alice, bob, carol, dave, erin, frank} {
		emails[u.id] = u.id[:8] + "@example.com"
		authServer.AddUser(u.id, emails[u.id])
	}
	authSrv := httptest.NewServer(authServer)
	t.Cleanup(authSrv.Close)
	minted, err := runWithEnv(append(s.base, "SUPABASE_JWT_SECRET="+string(s.jwtSecret)), s.bin+"/devtoken", "-role", "service_role")
	require.NoError(t, err, string(minted))
	serviceKey := strings.TrimSpace(string(minted))
	mailbox := notifytest.NewSMTPServer(t)
	notifyEnv := []string{"SUPABASE_AUTH_URL=" + authSrv.URL, "SUPABASE_SERVICE_ROLE_KEY=" + serviceKey,
		"SMTP_URL=" + mailbox.URL("", ""), "SMTP_FROM=security@tokka.test"}

	// The email says Tokka stopped using the keys, so notify refuses until
	// quarantine has run.
	out, code = s.incident(t, notifyEnv, append([]string{"notify"}, window...)...)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "run `syncer incident quarantine` with the same window first")
	require.Empty(t, mailbox.Messages())

	out, code = s.incident(t, nil, append([]string{"quarantine"}, window...)...)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "quarantine INC-E2E-1: quarantined 3, key replaced since 1, deleted 1, already recorded 0")
	out, code = s.incident(t, nil, append([]string{"quarantine"}, window...)...)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "quarantined 0, key replaced since 0, deleted 0, already recorded 5", "a second run changes nothing")

	// What alice sees: both connections compromised (the spec's enum has
	// it: every response is validated), sync now refused, one critical
	// key_access alert per connection, the quarantine in her audit log.
	for _, id := range []string{aliceOpenAI, aliceAnthropic} {
		var c connection
		require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodGet, "/v1/connections/"+id, nil, &c))
		require.Equal(t, "compromised", c.Status)
		require.NotNil(t, c.LastError)
		require.Contains(t, *c.LastError, "INC-E2E-1")
		require.Equal(t, http.StatusConflict, s.call(t, alice, http.MethodPost, "/v1/connections/"+id+"/sync", nil, nil))
	}
	var alerts struct {
		Data []struct {
			Kind, Severity, Title string
			ConnectionID          *string `json:"connection_id"`
		}
	}
	require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodGet, "/v1/alerts", nil, &alerts))
	var alerted []string
	for _, a := range alerts.Data {
		if a.Kind == "key_access" && a.Severity == "critical" && strings.Contains(a.Title, "revoke and rotate") {
			alerted = append(alerted, *a.ConnectionID)
		}
	}
	require.ElementsMatch(t, []string{aliceOpenAI, aliceAnthropic}, alerted)
	var frankConnNow connection
	require.Equal(t, http.StatusOK, s.call(t, frank, http.MethodGet, "/v1/connections/"+frankConn, nil, &frankConnNow))
	require.NotEqual(t, "compromised", frankConnNow.Status, "frank's key now was set after the window")
	keyAccess := func(u user) (titles []string, conns []*string) {
		t.Helper()
		require.Equal(t, http.StatusOK, s.call(t, u, http.MethodGet, "/v1/alerts", nil, &alerts))
		for _, a := range alerts.Data {
			if a.Kind == "key_access" {
				titles, conns = append(titles, a.Title), append(conns, a.ConnectionID)
			}
		}
		return titles, conns
	}
	titles, conns := keyAccess(bob)
	require.Len(t, titles, 1, "bob is alerted about his deleted connection's key")
	require.Contains(t, titles[0], "revoke and rotate")
	require.Nil(t, conns[0])
	for _, u := range []user{carol, dave} {
		titles, _ := keyAccess(u)
		require.Empty(t, titles)
	}

	// The running syncer never leases a compromised connection, even when
	// everything is due; frank's (not compromised) syncs again meanwhile.
	owner := s.owner(t)
	decryptions := func(conn string) int {
		var n int
		require.NoError(t, owner.Get(&n, `SELECT count(*) FROM tokka.audit_events
			WHERE connection_id = $1 AND action = 'key.decrypted'`, conn))
		return n
	}
	before := map[string]int{aliceOpenAI: decryptions(aliceOpenAI), aliceAnthropic: decryptions(aliceAnthropic),
		erinConn: decryptions(erinConn), frankConn: decryptions(frankConn)}
	_, err = owner.Exec(`UPDATE tokka.connections SET next_sync_at = now() - interval '1 hour'`)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return decryptions(frankConn) > before[frankConn] }, 30*time.Second, 100*time.Millisecond)
	s.waitPasses(t, 3) // each finds the compromised connections due
	for _, id := range []string{aliceOpenAI, aliceAnthropic, erinConn} {
		require.Equal(t, before[id], decryptions(id), "compromised connection %s was decrypted", id)
	}
	_, err = owner.Exec(`UPDATE tokka.connections SET lease_owner = 'someone', lease_expires_at = now() + interval '1 minute'
		WHERE id = $1`, aliceOpenAI)
	require.ErrorContains(t, err, "connections_compromised_unleased", "the database refuses a lease on a compromised connection")

	// notify --dry-run lists the right users, and no others, and changes
	// nothing; it needs no SMTP settings.
	out, code = s.incident(t, notifyEnv[:2], append([]string{"notify", "--dry-run"}, window...)...)
	require.Equal(t, 0, code, out)
	would := regexp.MustCompile(`(?m)^--- would send to (\S+) \(user (\S+), (\d+) connections\)$`).FindAllStringSubmatch(out, -1)
	got := map[string]string{}
	for _, m := range would {
		got[m[2]] = m[1]
		require.Equal(t, strconv.Itoa(len(affected[m[2]])), m[3], "connections of user %s", m[2])
	}
	require.Equal(t, map[string]string{alice.id: emails[alice.id], bob.id: emails[bob.id], erin.id: emails[erin.id], frank.id: emails[frank.id]}, got)
	require.Contains(t, out, "notify INC-E2E-1 (dry run, nothing sent or recorded): notified 4 users about 5 connections")
	require.NotContains(t, out, serviceKey)
	require.NotContains(t, out, carol.id)
	require.NotContains(t, out, dave.id)
	require.ElementsMatch(t, []string{alice.id, bob.id, erin.id, frank.id}, authServer.AdminLookups(), "only affected users are looked up")
	require.Empty(t, mailbox.Messages())
	var notified int
	require.NoError(t, owner.Get(&notified, `SELECT count(*) FROM tokka.audit_events WHERE action = 'incident.notified'`))
	require.Zero(t, notified)

	// The real run delivers one email per affected user to the local SMTP
	// receiver, and a second run sends nothing more.
	out, code = s.incident(t, append(notifyEnv, "SMTP_URL="+mailbox.URL("", "")),
		append([]string{"notify", "--summary", "An attacker read a copy of the database."}, window...)...)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "notify INC-E2E-1: notified 4 users about 5 connections, already notified 0, no address 0, failed 0")
	require.NotContains(t, out, serviceKey)
	msgs := mailbox.Messages()
	require.Len(t, msgs, 4)
	layout := "2006-01-02 15:04:05"
	if from.Format(layout) == to.Format(layout) {
		layout += ".000000"
	}
	period := from.Format(layout) + " to " + to.Format(layout)
	var to4 []string
	for _, m := range msgs {
		require.Equal(t, "security@tokka.test", m.From)
		require.Len(t, m.To, 1)
		to4 = append(to4, m.To[0])
		body := decodeQP(t, m.Data)
		require.Contains(t, body, "Subject: Security incident: rotate the provider keys you stored in Tokka (INC-E2E-1)")
		require.Contains(t, body, "An attacker read a copy of the database.")
		require.Contains(t, body, "WHAT MAY HAVE BEEN COMPROMISED")
		require.Contains(t, body, "WHAT TOKKA IS DOING")
		require.Contains(t, body, "Revoke each key listed above")
		require.Contains(t, body, "Create a new Admin API key")
		require.Contains(t, body, "The period concerned is "+period+" (UTC).", "the real window, never \"22:08 to 22:08\"")
	}
	require.ElementsMatch(t, []string{emails[alice.id], emails[bob.id], emails[erin.id], emails[frank.id]}, to4)
	for _, m := range msgs {
		if m.To[0] == emails[alice.id] {
			body := decodeQP(t, m.Data)
			require.Contains(t, body, "sk-admin-…")
			require.Contains(t, body, "sk-ant-admin…")
			require.NotContains(t, body, "incALICE", "never more of a key than its hint")
		}
	}
	out, code = s.incident(t, notifyEnv, append([]string{"notify"}, window...)...)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "notified 0 users about 0 connections, already notified 4")
	require.Len(t, mailbox.Messages(), 4)

	// Every affected connection's owner has both steps in their audit log.
	for u, conns := range affected {
		var events struct {
			Data []struct {
				Action, Outcome, Actor, Detail string
				ConnectionID                   string `json:"connection_id"`
			}
		}
		require.Equal(t, http.StatusOK, s.call(t, users[u], http.MethodGet, "/v1/audit-events?limit=200", nil, &events))
		for _, c := range conns {
			var actions []string
			for _, e := range events.Data {
				if e.ConnectionID == c && strings.HasPrefix(e.Action, "incident.") {
					require.Equal(t, "success", e.Outcome)
					require.True(t, strings.HasPrefix(e.Detail, "incident INC-E2E-1: "), e.Detail)
					require.True(t, strings.HasPrefix(e.Actor, "syncer:"), e.Actor)
					actions = append(actions, e.Action)
				}
			}
			require.ElementsMatch(t, []string{"incident.quarantined", "incident.notified"}, actions, "user %s connection %s", u, c)
		}
	}
	var verify struct{ Intact bool }
	require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodGet, "/v1/audit-events/verify", nil, &verify))
	require.True(t, verify.Intact)

	// Alice leaves the quarantine by pasting a new key: it syncs again.
	require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodPatch, "/v1/connections/"+aliceOpenAI,
		map[string]string{"api_key": "sk-admin-incALICEnew" + randomHex(8)}, nil))
	s.waitFor(t, alice, aliceOpenAI, "active")

	// The quarantine turns out to have been a mistake: release undoes it
	// for the keys still quarantined (alice's Anthropic one, erin's), which
	// the running syncer then uses again; alice's new key had nothing to
	// undo. A second run changes nothing.
	out, code = s.incident(t, nil, "release", "--ref", "INC-E2E-1")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "release INC-E2E-1: released 2, already released 0, no longer compromised 1, still quarantined by another incident 0, deleted 0")
	s.waitFor(t, alice, aliceAnthropic, "active")
	s.waitFor(t, erin, erinConn, "active")
	out, code = s.incident(t, nil, "release", "--ref", "INC-E2E-1")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "released 0, already released 2, no longer compromised 1")
	var released struct {
		Data []struct {
			Action, Actor, Detail string
			ConnectionID          string `json:"connection_id"`
		}
	}
	require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodGet, "/v1/audit-events?limit=200", nil, &released))
	var releasedConns []string
	for _, e := range released.Data {
		if e.Action == "incident.released" {
			require.True(t, strings.HasPrefix(e.Detail, "incident INC-E2E-1: quarantine released"), e.Detail)
			require.True(t, strings.HasPrefix(e.Actor, "syncer:"), e.Actor)
			releasedConns = append(releasedConns, e.ConnectionID)
		}
	}
	require.Equal(t, []string{aliceAnthropic}, releasedConns)
	require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodGet, "/v1/audit-events/verify", nil, &verify))
	require.True(t, verify.Intact)
	out, code = s.incident(t, nil, "release", "--ref", "INC-NONE")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "quarantined no connection; check --ref")
}

// decodeQP returns a received message with its quoted-printable body
// decoded, headers first.
func decodeQP(t *testing.T, data string) string {
	t.Helper()
	head, body, ok := strings.Cut(strings.ReplaceAll(data, "\r\n", "\n"), "\n\n")
	require.True(t, ok, "a message has headers and a body")
	dec, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(body)))
	require.NoError(t, err)
	return head + "\n\n" + string(dec)
}

// waitPasses waits until the running syncer has completed n passes that
// started after the call, counted by changes of its
// tokka_sync_last_pass_timestamp_seconds (the stack must serve metrics).
func (s *stack) waitPasses(t *testing.T, n int) {
	t.Helper()
	lastPass := func() float64 {
		m := regexp.MustCompile(`(?m)^tokka_sync_last_pass_timestamp_seconds (\S+)$`).FindStringSubmatch(scrape(t, s.syncerMetrics))
		require.NotNil(t, m, "the syncer serves no last-pass metric")
		v, err := strconv.ParseFloat(m[1], 64)
		require.NoError(t, err)
		return v
	}
	last, seen := lastPass(), 0
	// The pass under way at the call completes first and does not count.
	waitFor(t, 30*time.Second, "the syncer's passes", func() bool {
		if v := lastPass(); v > last {
			last, seen = v, seen+1
		}
		return seen > n
	})
}
