// Command devtoken prints a Supabase-shaped access token signed with
// SUPABASE_JWT_SECRET, for the local development stack only.
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
	role := fs.String("role", "authenticated", "role claim; service_role makes a key for the Auth server's admin API (syncer incident notify)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret := getenv("SUPABASE_JWT_SECRET")
	if secret == "" {
		return errors.New("SUPABASE_JWT_SECRET is required")
	}
	tok, err := authtest.Token{Subject: *sub, Email: *email, TTL: *ttl, Role: *role, Issuer: getenv("SUPABASE_JWT_ISSUER")}.HS256([]byte(secret))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
