package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tokka-dev/tokka/pkg/envconfig"
	"github.com/tokka-dev/tokka/pkg/incident"
	"github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/secret"
)

const incidentUsage = `usage: syncer incident <list|quarantine|notify|release> --from T --to T [--ref REF] [flags]

Breach response (see "Incident runbook" in the README). T is RFC 3339
(2026-11-27T09:00:00Z) or a date (--from: its start, --to: its end, UTC).
Give every command the same window and --ref: the reference ties their
records together, and each command is safe to run again.

  list        print the users and connections whose keys the window may have
              exposed: keys Tokka held during it (connections that existed in
              it, deleted ones included, from the audit log) or decrypted in it
  quarantine  stop using those keys: status compromised (never leased again),
              a critical key_access alert per connection telling its owner to
              rotate, an incident.quarantined audit event per connection
  notify      email every affected user what was exposed, what Tokka is doing
              and what to do (revoke and rotate their provider keys), once per
              incident; an incident.notified audit event per connection
              --dry-run      print the emails, send and record nothing
              --summary TXT  what happened, in your words, for the email
  release     undo a mistaken quarantine (--ref alone is enough): every
              connection that incident set to compromised goes back to pending
              and syncs again, with an incident.released audit event, unless
              its user pasted a new key since, it was deleted, or another
              incident's quarantine still holds it

environment: DATABASE_URL (the syncer's), SYNCER_INSTANCE (optional); for
notify also SUPABASE_AUTH_URL (or SUPABASE_URL), SUPABASE_SERVICE_ROLE_KEY
(addresses come from the Auth server's admin API), SUPABASE_ANON_KEY
(optional, the gateway's apikey), and SMTP_URL and SMTP_FROM (not needed
with --dry-run).`

// incidentConfig is what `syncer incident` needs from the syncer's
// settings. It needs no ENCRYPTION_KEY: nothing here opens a key.
type incidentConfig struct {
	DatabaseURL string
	Instance    string
	Auth        *incident.AuthConfig // notify only
	SMTP        *notify.SMTPConfig   // notify without --dry-run only
}

// loadIncidentConfig reads the settings cmd needs: the database, and for
// notify the Auth server's admin API and (unless dryRun) the mail relay.
func loadIncidentConfig(getenv func(string) string, cmd string, dryRun bool) (incidentConfig, error) {
	s, err := loadConfig(getenv, needDBOnly)
	if err != nil {
		return incidentConfig{}, err
	}
	c := incidentConfig{DatabaseURL: s.DatabaseURL, Instance: s.Instance}
	if c.Instance == "" {
		host, _ := os.Hostname()
		c.Instance = fmt.Sprintf("%s-incident-%d", host, os.Getpid())
	}
	if cmd != "notify" {
		return c, nil
	}
	authURL, err := envconfig.SupabaseAuthURL(s.SupabaseURL, s.AuthURL)
	if err != nil {
		return c, err
	}
	if authURL == "" {
		return c, errors.New("SUPABASE_AUTH_URL (or SUPABASE_URL) is required for notify: users' addresses come from the Auth server")
	}
	if s.ServiceRoleKey == "" {
		return c, errors.New("SUPABASE_SERVICE_ROLE_KEY is required for notify: the Auth server's admin API needs the service_role key")
	}
	c.Auth = &incident.AuthConfig{URL: authURL, ServiceRoleKey: secret.FromString(s.ServiceRoleKey), APIKey: s.AnonKey}
	if _, err := incident.NewAuthDirectory(*c.Auth); err != nil {
		return c, err // before the database: a key the Auth server would refuse
	}
	if dryRun {
		return c, nil
	}
	if s.SMTPURL == "" {
		return c, errors.New("SMTP_URL is required for notify (use --dry-run to only print the emails)")
	}
	smtp, err := notify.ParseSMTPURL(s.SMTPURL, s.SMTPFrom)
	if err != nil {
		return c, err
	}
	c.SMTP = &smtp
	return c, nil
}

// incidentCommand is `syncer incident …`. Its report goes to stdout; it
// returns an error (exit 1) when it could not run, when quarantine or release
// stopped early, when release found nothing quarantined under the reference,
// or when notify failed to reach someone it could have reached (run it
// again: it retries only those).
func incidentCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) == 0 {
			return fmt.Errorf("no incident command given\n%s", incidentUsage)
		}
		_, err := fmt.Fprintln(stdout, incidentUsage)
		return err
	}
	cmd := args[0]
	if cmd != "list" && cmd != "quarantine" && cmd != "notify" && cmd != "release" {
		return fmt.Errorf("unknown incident command %q\n%s", cmd, incidentUsage)
	}
	fs := flag.NewFlagSet("syncer incident "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	from := fs.String("from", "", "start of the window")
	to := fs.String("to", "", "end of the window")
	ref := fs.String("ref", "", "incident reference")
	dryRun := fs.Bool("dry-run", false, "notify: print, do not send or record")
	summary := fs.String("summary", "", "notify: what happened, for the email")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%v\n%s", err, incidentUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), incidentUsage)
	}
	if cmd != "notify" && (*dryRun || *summary != "") {
		return errors.New("--dry-run and --summary belong to notify")
	}
	var w incident.Window
	var err error
	if cmd == "release" && *from == "" && *to == "" {
		// Release acts on what a reference quarantined; no window needed.
		if *ref == "" {
			return errors.New("release needs --ref (or the --from and --to the quarantine was given)")
		}
		if err := incident.CheckRef(*ref); err != nil {
			return err
		}
		w.Ref = *ref
	} else if w, err = incident.ParseWindow(*from, *to, *ref); err != nil {
		return err
	}
	c, err := loadIncidentConfig(getenv, cmd, *dryRun)
	if err != nil {
		return err
	}
	db, err := postgres.Open(ctx, c.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer db.Close()
	r := &incident.Responder{Store: db, Actor: "syncer:" + c.Instance, Out: stdout, Summary: *summary}
	switch cmd {
	case "list":
		return r.List(ctx, w)
	case "quarantine":
		_, err := r.Quarantine(ctx, w)
		return err
	case "release":
		_, err := r.Release(ctx, w.Ref)
		return err
	}
	if r.Directory, err = incident.NewAuthDirectory(*c.Auth); err != nil {
		return err
	}
	if c.SMTP != nil {
		r.Mailer = notify.NewMailer(*c.SMTP)
	}
	sum, err := r.Notify(ctx, w, *dryRun)
	if err != nil {
		return err
	}
	if sum.Failed > 0 {
		return fmt.Errorf("notify: %d users could not be notified (see above); run the same command again to retry them", sum.Failed)
	}
	return nil
}
