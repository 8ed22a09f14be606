package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
)

// TestEmptiesMeanTheSameInPostAndPatch: for every field, "", white space
// only and null are treated alike, and alike by POST and PATCH: refused
// with 400 naming the field wherever the field must hold a value (leave it
// out for the default), and "no webhook" for channels.webhook_url, which
// documents all three. A PATCH with nothing to change is 400 on every
// resource.
func TestEmptiesMeanTheSameInPostAndPatch(t *testing.T) {
	t.Parallel()
	b := setup(t, fromIP(uniqueLoopback()))
	alice := b.newUser(t)
	conn := b.connect(t, alice)
	status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets", map[string]any{"amount_usd": "5"})
	require.Equal(t, http.StatusCreated, status, string(body))
	var budget struct {
		ID, Name, Scope string
		Channels        struct {
			WebhookURL *string `json:"webhook_url"`
		}
	}
	require.NoError(t, json.Unmarshal(body, &budget))
	require.Equal(t, "Monthly budget", budget.Name, "a name left out is the default")
	require.Equal(t, "all", budget.Scope)

	empties := []string{`""`, `"   "`, `"\t\n"`, `"\u00a0"`, `null`}
	post := func(path, body string) (int, httpapi.Problem) {
		status, h, resp := b.send(t, http.MethodPost, path, alice.token, body, "Content-Type", "application/json")
		var p httpapi.Problem
		if status >= 400 {
			requireProblem(t, status, h, resp, status)
			require.NoError(t, json.Unmarshal(resp, &p))
		}
		return status, p
	}
	patch := func(path, body string) (int, httpapi.Problem) {
		status, h, resp := b.send(t, http.MethodPatch, path, alice.token, body, "Content-Type", "application/json")
		var p httpapi.Problem
		if status >= 400 {
			requireProblem(t, status, h, resp, status)
			require.NoError(t, json.Unmarshal(resp, &p))
		}
		return status, p
	}
	for _, e := range empties {
		key := `"` + uniqueKey("sk-admin-empties") + `"`
		for _, tc := range []struct {
			name, field string
			send        func() (int, httpapi.Problem)
		}{
			{"POST label", "label", func() (int, httpapi.Problem) {
				return post("/v1/connections", `{"provider":"openai","label":`+e+`,"api_key":`+key+`}`)
			}},
			{"PATCH label", "label", func() (int, httpapi.Problem) { return patch("/v1/connections/"+conn, `{"label":`+e+`}`) }},
			{"POST api_key", "api_key", func() (int, httpapi.Problem) {
				return post("/v1/connections", `{"provider":"openai","api_key":`+e+`}`)
			}},
			{"PATCH api_key", "api_key", func() (int, httpapi.Problem) { return patch("/v1/connections/"+conn, `{"api_key":`+e+`}`) }},
			{"POST provider", "provider", func() (int, httpapi.Problem) {
				return post("/v1/connections", `{"provider":`+e+`,"api_key":`+key+`}`)
			}},
			{"POST name", "name", func() (int, httpapi.Problem) { return post("/v1/budgets", `{"amount_usd":"5","name":`+e+`}`) }},
			{"PATCH name", "name", func() (int, httpapi.Problem) { return patch("/v1/budgets/"+budget.ID, `{"name":`+e+`}`) }},
			{"POST amount_usd", "amount_usd", func() (int, httpapi.Problem) { return post("/v1/budgets", `{"amount_usd":`+e+`}`) }},
			{"PATCH amount_usd", "amount_usd", func() (int, httpapi.Problem) {
				return patch("/v1/budgets/"+budget.ID, `{"amount_usd":`+e+`}`)
			}},
			{"POST scope", "scope", func() (int, httpapi.Problem) { return post("/v1/budgets", `{"amount_usd":"5","scope":`+e+`}`) }},
		} {
			status, p := tc.send()
			require.Equal(t, http.StatusBadRequest, status, "%s %s: %s", tc.name, e, p.Detail)
			require.Equal(t, tc.field, p.Field, "%s %s: %s", tc.name, e, p.Detail)
		}
		// A webhook URL that is empty in any of these ways is no webhook,
		// when creating and when changing.
		status, p := post("/v1/budgets", `{"amount_usd":"5","channels":{"webhook_url":`+e+`}}`)
		require.Equal(t, http.StatusCreated, status, "%s: %s", e, p.Detail)
		status, p = patch("/v1/budgets/"+budget.ID, `{"channels":{"webhook_url":`+e+`}}`)
		require.Equal(t, http.StatusOK, status, "%s: %s", e, p.Detail)
	}
	for _, field := range []string{"thresholds", "forecast_thresholds", "channels", "rotate_webhook_secret"} {
		status, p := patch("/v1/budgets/"+budget.ID, `{"`+field+`":null}`)
		require.Equal(t, http.StatusBadRequest, status, field)
		require.Equal(t, field, p.Field)
		if field != "rotate_webhook_secret" {
			status, p = post("/v1/budgets", `{"amount_usd":"5","`+field+`":null}`)
			require.Equal(t, http.StatusBadRequest, status, field)
			require.Equal(t, field, p.Field)
		}
	}

	// Nothing to change is 400 everywhere.
	for _, tc := range []struct{ path, body string }{
		{"/v1/connections/" + conn, `{}`},
		{"/v1/budgets/" + budget.ID, `{}`},
		{"/v1/budgets/" + budget.ID, `{"rotate_webhook_secret":false}`},
	} {
		status, p := patch(tc.path, tc.body)
		require.Equal(t, http.StatusBadRequest, status, tc.path+" "+tc.body)
		require.Contains(t, p.Detail, "nothing to change")
	}
	var label string
	require.NoError(t, b.sql.Get(&label, `SELECT label FROM tokka.connections WHERE id = $1`, conn))
	require.Equal(t, "org", label, "no refused PATCH changed anything")
}

// TestNamesAreNormalisedAndCountedAsPeopleSeeThem: labels and budget names
// are stored in NFC (a decomposed "é" typed on one keyboard is the same
// name as the composed one typed on another), their length is counted in
// user-perceived characters (100 flags, 200 code points, is 100
// characters), and bidirectional overrides and isolates and zero-width
// characters, which make a name read as something else, are refused.
func TestNamesAreNormalisedAndCountedAsPeopleSeeThem(t *testing.T) {
	t.Parallel()
	b := setup(t, fromIP(uniqueLoopback()))
	alice := b.newUser(t)
	create := func(label string) (int, map[string]any) {
		status, _, body := b.do(t, alice, http.MethodPost, "/v1/connections",
			map[string]string{"provider": "openai", "label": label, "api_key": uniqueKey("sk-admin-names")})
		var out map[string]any
		require.NoError(t, json.Unmarshal(body, &out))
		return status, out
	}
	status, c := create("Cafe\u0301 ")
	require.Equal(t, http.StatusCreated, status, c)
	require.Equal(t, "Caf\u00e9", c["label"], "NFC, trimmed")
	id := c["id"].(string)
	var stored string
	require.NoError(t, b.sql.Get(&stored, `SELECT label FROM tokka.connections WHERE id = $1`, id))
	require.Equal(t, "Caf\u00e9", stored)

	for _, ok := range []string{strings.Repeat("🇫🇷", 100), strings.Repeat("e\u0301", 100), strings.Repeat("👍🏽", 100), strings.Repeat("👨🏽\u200d💻", 100),
		strings.Repeat("x", 100), "👩\u200d💻 \U0001F3F3\uFE0F\u200d\U0001F308"} {
		status, c := create(ok)
		require.Equal(t, http.StatusCreated, status, "%q: %v", ok, c)
	}
	for _, long := range []string{strings.Repeat("🇫🇷", 101), strings.Repeat("x", 101), "x" + strings.Repeat("\u0301", 400),
		"a\u200db", "👩\u200d", "\u200d💻"} {
		status, c := create(long)
		require.Equal(t, http.StatusBadRequest, status, "%q: %v", long, c)
		require.Equal(t, "label", c["field"])
	}
	for _, r := range []rune{0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF} {
		bad := "pay" + string(r) + "roll"
		status, c := create(bad)
		require.Equal(t, http.StatusBadRequest, status, "U+%04X: %v", r, c)
		require.Contains(t, c["detail"], "must not contain", "U+%04X", r)
		status, _, body := b.do(t, alice, http.MethodPatch, "/v1/connections/"+id, map[string]string{"label": bad})
		require.Equal(t, http.StatusBadRequest, status, "U+%04X: %s", r, body)
		status, _, body = b.do(t, alice, http.MethodPost, "/v1/budgets", map[string]string{"amount_usd": "5", "name": bad})
		require.Equal(t, http.StatusBadRequest, status, "U+%04X: %s", r, body)
		require.Contains(t, string(body), `"field":"name"`)
	}

	status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets", map[string]string{"amount_usd": "5", "name": "Bu\u0308ro"})
	require.Equal(t, http.StatusCreated, status, string(body))
	var bud struct{ ID, Name string }
	require.NoError(t, json.Unmarshal(body, &bud))
	require.Equal(t, "B\u00fcro", bud.Name)
	status, _, body = b.do(t, alice, http.MethodPatch, "/v1/budgets/"+bud.ID, map[string]string{"name": strings.Repeat("🇫🇷", 100)})
	require.Equal(t, http.StatusOK, status, string(body))
	status, _, body = b.do(t, alice, http.MethodPatch, "/v1/budgets/"+bud.ID, map[string]string{"name": strings.Repeat("🇫🇷", 101)})
	require.Equal(t, http.StatusBadRequest, status, string(body))
	require.Equal(t, 7, b.countConnections(t, alice.id), "the NFC label and the six that are short enough")
}
