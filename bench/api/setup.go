package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
)

// withUser is dbURL logging in as user, without a password (the login
// roles get none here: the benchmark server trusts local connections).
func withUser(dbURL, user string) string {
	u, _ := url.Parse(dbURL)
	u.User = url.User(user)
	return u.String()
}

// withHost is dbURL with its host and port replaced by addr.
func withHost(dbURL, addr string) string {
	u, _ := url.Parse(dbURL)
	u.Host = addr
	return u.String()
}

// withDatabase is dbURL pointed at database name.
func withDatabase(dbURL, name string) string {
	u, _ := url.Parse(dbURL)
	u.Path = "/" + name
	return u.String()
}

// applyLoginRoles runs deploy/login-roles.sql with psql, the operator's
// step that creates the api's and the syncer's login roles. Roles belong
// to the server, not the database; the script changes nothing when they
// exist, and sets no password here.
func applyLoginRoles(ctx context.Context, dbURL string) error {
	psql, err := exec.LookPath("psql")
	if err != nil {
		return errors.New("psql (postgresql-client) is needed to apply deploy/login-roles.sql")
	}
	out, err := exec.CommandContext(ctx, psql, dbURL, "-q", "-f", filepath.Join("deploy", "login-roles.sql")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("deploy/login-roles.sql: %w: %s", err, out)
	}
	return nil
}

// build compiles the api, the syncer and the hello ceiling into dir.
func build(ctx context.Context, dir string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), "./cmd/api", "./cmd/syncer", "./bench/api/hello")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build (run bench/api from the repository's root): %w", err)
	}
	return nil
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// process is a server the benchmark started.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProcess starts bin and waits until readyURL answers 200. stdout nil
// discards the process's standard output; its standard error is ours.
func startProcess(ctx context.Context, bin string, args, env []string, stdout *os.File, readyURL string) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{name: filepath.Base(bin), cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := client.Get(readyURL); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited before it was ready: %v", p.name, p.err)
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s did not answer %s within 30s", p.name, readyURL)
		}
	}
}

// stop asks the process to shut down (SIGTERM) and waits for it, killing
// it after 20 seconds.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// call makes one request to the api and returns its body; any status but
// want is an error that quotes the (problem) body.
func call(ctx context.Context, method, url, token string, body []byte, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: HTTP %d: %s", method, req.URL.Path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return b, nil
}

// syncOnce runs `syncer once` as the syncer's login role against the fake
// provider: every due connection is backfilled days days.
func syncOnce(ctx context.Context, bin, dbURL, encKey, fakeURL string, days int) error {
	cmd := exec.CommandContext(ctx, bin, "once")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + withUser(dbURL, "tokka_sync"),
		"ENCRYPTION_KEY=" + encKey, "OPENAI_BASE_URL=" + fakeURL, "ANTHROPIC_BASE_URL=" + fakeURL,
		"LOG_LEVEL=warn", "SYNC_BACKFILL_DAYS=" + strconv.Itoa(days), "KEY_ROTATION_REMINDER_DAYS=3650"}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("syncer once: %w", err)
	}
	return nil
}

// seed adds the user's two connections through the api (which seals their
// keys) and backfills them with `syncer once` from the fake provider. The
// fake provider derives its data from the key and the date, and the keys
// are fixed, so runs on the same day see the same data.
func seed(ctx context.Context, out io.Writer, apiURL, token, dbURL, syncer, encKey string, days int) error {
	for _, c := range []struct{ provider, key string }{
		{"openai", "sk-admin-tokkabench0001"},
		{"anthropic", "sk-ant-admin01-tokkabench0001"},
	} {
		body, _ := json.Marshal(map[string]string{"provider": c.provider, "label": c.provider, "api_key": c.key})
		if _, err := call(ctx, http.MethodPost, apiURL+"/v1/connections", token, body, http.StatusCreated); err != nil {
			return err
		}
	}
	fake := fakeprovider.New(fakeprovider.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck
	defer srv.Close()
	start := time.Now()
	if err := syncOnce(ctx, syncer, dbURL, encKey, "http://"+ln.Addr().String(), days); err != nil {
		return err
	}
	db, err := sqlx.Open("postgres", dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	var active, usageRows, costRows int
	if err := db.GetContext(ctx, &active, `SELECT count(*) FROM tokka.connections WHERE status = 'active' AND last_synced_at IS NOT NULL`); err != nil {
		return err
	}
	if active != 2 {
		return fmt.Errorf("after syncer once, %d of 2 connections are active and synced", active)
	}
	_ = db.GetContext(ctx, &usageRows, `SELECT count(*) FROM tokka.usage_daily`)
	_ = db.GetContext(ctx, &costRows, `SELECT count(*) FROM tokka.cost_daily`)
	if _, err := db.ExecContext(ctx, `ANALYZE`); err != nil {
		return err
	}
	fmt.Fprintf(out, "one user, an OpenAI and an Anthropic connection backfilled %d days by `syncer once` from the fake provider: %d usage rows, %d cost rows (%s)\n",
		days, usageRows, costRows, time.Since(start).Round(time.Millisecond))
	return nil
}
