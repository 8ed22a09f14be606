// Command devtoken prints a Supabase-shaped access token signed with
// SUPABASE_JWT_SECRET, for the local development stack only, or with -role
// service_role a service key for a self-hosted Auth server's admin API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tokka-dev/tokka/pkg/authtest"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "devtoken:", err)
		os.Exit(1)
	}
}

func run(_ context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("devtoken", flag.ContinueOnError)
	sub := fs.String("sub", "00000000-0000-4000-8000-000000000001", "user id (UUID)")
	email := fs.String("email", "dev@example.com", "email claim")
	ttl := fs.Duration("ttl", 12*time.Hour, "lifetime")
	role := fs.String("role", "authenticated",
		"role claim; service_role mints a service key for the Auth server's admin API (syncer incident notify), "+
			"shaped like Supabase's: role, iss, iat and exp only")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret := getenv("SUPABASE_JWT_SECRET")
	if secret == "" {
		return errors.New("SUPABASE_JWT_SECRET is required")
	}
	var tok string
	var err error
	if *role == "service_role" {
		// A service key names no user: GoTrue looks up any sub it is given
		// and refuses the key (403 user_not_found) when there is no such
		// user, so -sub and -email would only break it.
		var userFlags error
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "sub" || f.Name == "email" {
				userFlags = fmt.Errorf("-%s does not go with -role service_role: a service key carries no user", f.Name)
			}
		})
		if userFlags != nil {
			return userFlags
		}
		// iss: SUPABASE_JWT_ISSUER when set (as on every token devtoken
		// mints), otherwise "supabase", what Supabase's own keys carry.
		tok, err = authtest.ServiceKey{Issuer: getenv("SUPABASE_JWT_ISSUER"), TTL: *ttl}.HS256([]byte(secret))
	} else {
		tok, err = authtest.Token{Subject: *sub, Email: *email, TTL: *ttl, Role: *role, Issuer: getenv("SUPABASE_JWT_ISSUER")}.HS256([]byte(secret))
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
