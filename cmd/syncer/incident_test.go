package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestIncidentConfigFailsFastWithOneClearLine checks `syncer incident`'s
// flags and environment before it touches the database: each mistake is one
// line naming the flag or variable, and the service-role key never appears.
func TestIncidentConfigFailsFastWithOneClearLine(t *testing.T) {
	t.Parallel()
	window := []string{"--from", "2026-11-20", "--to", "2026-11-21"}
	db := "DATABASE_URL=postgres://127.0.0.1:1/x"
	key := "service-role-" + strings.Repeat("s", 20)
	for _, c := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"no command", nil, nil, "usage: syncer incident"},
		{"unknown command", []string{"purge"}, nil, `unknown incident command "purge"`},
		{"no window", []string{"list"}, []string{db}, "--from and --to are required"},
		{"bad time", []string{"list", "--from", "monday", "--to", "2026-11-21"}, []string{db}, "--from:"},
		{"dry run is notify's", append([]string{"quarantine", "--dry-run"}, window...), []string{db}, "--dry-run and --summary belong to notify"},
		{"release without a reference", []string{"release"}, []string{db}, "release needs --ref"},
		{"release with a bad reference", []string{"release", "--ref", "INC 1; drop"}, []string{db}, "--ref:"},
		{"release, database down", []string{"release", "--ref", "INC-1"}, []string{db}, "cannot reach database"},
		{"no database", append([]string{"list"}, window...), nil, "DATABASE_URL is required"},
		{"no auth server", append([]string{"notify", "--dry-run"}, window...), []string{db}, "SUPABASE_AUTH_URL (or SUPABASE_URL) is required"},
		{"auth url not a url", append([]string{"notify", "--dry-run"}, window...),
			[]string{db, "SUPABASE_URL=ref.supabase.co"}, "SUPABASE_URL must be an absolute http(s) URL"},
		{"no service key", append([]string{"notify", "--dry-run"}, window...),
			[]string{db, "SUPABASE_URL=https://ref.supabase.co"}, "SUPABASE_SERVICE_ROLE_KEY is required"},
		{"service key naming a user", append([]string{"notify", "--dry-run"}, window...),
			[]string{db, "SUPABASE_AUTH_URL=http://127.0.0.1:9999", "SUPABASE_SERVICE_ROLE_KEY=" + unsignedJWT(`{"iss":"supabase","role":"service_role","sub":"`+key+`"}`)},
			"SUPABASE_SERVICE_ROLE_KEY carries a sub claim"},
		{"user token as service key", append([]string{"notify", "--dry-run"}, window...),
			[]string{db, "SUPABASE_AUTH_URL=http://127.0.0.1:9999", "SUPABASE_SERVICE_ROLE_KEY=" + unsignedJWT(`{"role":"authenticated"}`)},
			"is not a service_role key"},
		{"no smtp", append([]string{"notify"}, window...),
			[]string{db, "SUPABASE_AUTH_URL=http://127.0.0.1:9999", "SUPABASE_SERVICE_ROLE_KEY=" + key}, "SMTP_URL is required"},
		{"smtp without sender", append([]string{"notify"}, window...),
			[]string{db, "SUPABASE_AUTH_URL=http://127.0.0.1:9999", "SUPABASE_SERVICE_ROLE_KEY=" + key, "SMTP_URL=smtp://127.0.0.1:2525"},
			"SMTP_FROM is required"},
	} {
		var out bytes.Buffer
		var pairs []string
		for _, e := range c.env {
			k, v, _ := strings.Cut(e, "=")
			pairs = append(pairs, k, v)
		}
		err := run(context.Background(), append([]string{"incident"}, c.args...), env(pairs...), &out)
		require.Error(t, err, c.name)
		require.Contains(t, err.Error(), c.want, c.name)
		require.NotContains(t, err.Error(), key, c.name)
		if c.args != nil && !strings.Contains(c.want, "unknown") {
			require.NotContains(t, err.Error(), "\n", "%s: one line", c.name)
		}
	}
}

// unsignedJWT is a JWT-shaped string with payload; what the syncer checks up
// front is the payload alone (the Auth server verifies the signature).
func unsignedJWT(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(payload)) + ".c2ln"
}
