package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/uuid"

	"github.com/tokka-dev/tokka/bench/benchdb"
	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/keyring"
)

// database is the bench's database, made fresh on each run.
const database = "tokka_bench_api"

// harness is what every measurement of one run shares: the settings, the
// seeded database, the built binaries, the user and the api's environment.
type harness struct {
	cfg       config
	dbURL     string // the bench database, as its owner
	drop      func() // drops it; nil with -keep
	dir       string // the built binaries, pgbench's scripts and logs
	encKey    string // the syncer's ENCRYPTION_KEY
	token     string // the user's bearer token
	apiEnv    []string
	logOut    *os.File // the api's log, with -log
	endpoints []*endpoint
	pgbench   *pgbench
}

// prepare makes the bench database on pg with the login roles, builds the
// binaries and makes the keys and the user; on error nothing is left
// behind. close undoes it.
func prepare(ctx context.Context, cfg config, pg *benchdb.Server) (*harness, error) {
	h := &harness{cfg: cfg}
	if err := h.setUp(ctx, pg); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

func (h *harness) setUp(ctx context.Context, pg *benchdb.Server) error {
	dbURL, drop, err := pg.Fresh(ctx, database)
	if err != nil {
		return err
	}
	h.dbURL = dbURL
	if h.cfg.keep {
		fmt.Fprintln(os.Stderr, "keeping the database:", dbURL)
	} else {
		h.drop = drop
	}
	if err := applyLoginRoles(ctx, dbURL); err != nil {
		return err
	}
	if h.dir, err = os.MkdirTemp("", "tokka-bench-api-"); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "building cmd/api, cmd/syncer and bench/api/hello…")
	if err := build(ctx, h.dir); err != nil {
		return err
	}
	h.encKey = "bench-encryption-key-" + uuid.NewString()
	kr, err := keyring.New(h.encKey, nil)
	if err != nil {
		return err
	}
	jwtSecret, fingerprintSecret := randomHex(32), randomHex(32)
	h.token, err = authtest.Token{Subject: uuid.NewString(), Email: "bench@tokka.invalid", TTL: 24 * time.Hour}.HS256([]byte(jwtSecret))
	if err != nil {
		return err
	}
	if h.cfg.logFile != "" {
		if h.logOut, err = os.Create(h.cfg.logFile); err != nil {
			return err
		}
	}
	h.apiEnv = append([]string{"ENCRYPTION_PUBLIC_KEY=" + kr.PublicKey().String(), "SUPABASE_JWT_SECRET=" + jwtSecret,
		"KEY_FINGERPRINT_SECRET=" + fingerprintSecret, "LOG_LEVEL=info"}, h.cfg.apiEnv...)
	h.endpoints = endpoints(time.Now().UTC(), h.cfg.only)
	clients := h.cfg.conns
	if h.cfg.pgbenchClients > 0 {
		clients = h.cfg.pgbenchClients
	}
	h.pgbench = &pgbench{bin: h.cfg.pgbenchBin, dbURL: withUser(dbURL, "tokka_api"), dir: h.dir,
		clients: clients, threads: min(clients, runtime.NumCPU())}
	return nil
}

// close drops the database (unless -keep) and removes the built binaries.
func (h *harness) close() {
	if h.logOut != nil {
		_ = h.logOut.Close()
	}
	if h.dir != "" {
		_ = os.RemoveAll(h.dir)
	}
	if h.drop != nil {
		h.drop()
	}
}

// startAPI starts the api on databaseURL (as tokka_api) with the run's
// environment and then extra, and returns it with its address.
func (h *harness) startAPI(ctx context.Context, databaseURL string, extra ...string) (*process, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	env := append([]string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + withUser(databaseURL, "tokka_api"),
		"API_ADDR=" + addr}, h.apiEnv...)
	p, err := startProcess(ctx, h.dir+"/api", nil, append(env, extra...), h.logOut, "http://"+addr+"/readyz")
	return p, addr, err
}

// seedAndCapture starts the api behind the recorder, seeds the user's data
// through it and captures each endpoint's SQL.
func (h *harness) seedAndCapture(ctx context.Context, out io.Writer) error {
	pgAddr, err := parseHost(h.dbURL)
	if err != nil {
		return err
	}
	rec, err := startRecorder(pgAddr)
	if err != nil {
		return err
	}
	defer rec.close()
	api, addr, err := h.startAPI(ctx, withHost(h.dbURL, rec.addr()))
	if err != nil {
		return err
	}
	defer api.stop()
	apiURL := "http://" + addr
	if err := seed(ctx, out, apiURL, h.token, h.dbURL, h.dir+"/syncer", h.encKey, h.cfg.days); err != nil {
		return err
	}
	var scripts io.Writer
	if h.cfg.verbose {
		scripts = out
	}
	return capture(ctx, rec, apiURL, h.token, h.endpoints, scripts)
}

// measure loads bare Echo hello and then each endpoint on the api straight
// on PostgreSQL, each beside its pgbench ceiling, and prints the table.
func (h *harness) measure(ctx context.Context, out io.Writer, failed *failures) ([]result, error) {
	var prof *profiler
	var extra []string
	if h.cfg.profDir != "" {
		pprofAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		prof = &profiler{addr: pprofAddr, dir: h.cfg.profDir}
		extra = append(extra, "PPROF_ADDR="+pprofAddr)
	}
	api, addr, err := h.startAPI(ctx, h.dbURL, extra...)
	if err != nil {
		return nil, err
	}
	defer api.stop()
	helloAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	hello, err := startProcess(ctx, h.dir+"/hello", []string{"-addr", helloAddr}, []string{"PATH=" + os.Getenv("PATH")},
		nil, "http://"+helloAddr+"/")
	if err != nil {
		return nil, err
	}
	defer hello.stop()
	// A short first run learns how long pgbench takes to connect (see
	// pgbench.connect) and shows that it can log in as tokka_api.
	probe, err := h.pgbench.run(ctx, "connect", script{text: "SELECT 1;\n"}, 0, time.Second)
	if err != nil || probe.failures() > 0 {
		return nil, fmt.Errorf("pgbench cannot run as tokka_api: %v %s", err, probe.sample)
	}

	fmt.Fprintln(os.Stderr, "measuring bare Echo hello…")
	ceiling := load(ctx, newTarget(helloAddr, "/", ""), h.cfg.conns, h.cfg.warmup, h.cfg.duration)
	var results []result
	for i, ep := range h.endpoints {
		fmt.Fprintf(os.Stderr, "measuring %s…\n", ep.name)
		profiled := prof.start(ctx, fmt.Sprintf("%d-%s", i, ep.slug()), h.cfg.warmup, h.cfg.duration)
		r := result{ep: ep, api: h.loadEndpoint(ctx, addr, ep)}
		if err := profiled(); err != nil {
			return nil, fmt.Errorf("profile of %s: %w", ep.name, err)
		}
		if ep.script != nil {
			if r.bench, err = h.pgbenchFor(ep).run(ctx, fmt.Sprintf("endpoint%d", i), *ep.script, h.cfg.warmup, h.cfg.duration); err != nil {
				return nil, fmt.Errorf("pgbench for %s: %w", ep.name, err)
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		results = append(results, r)
	}
	report(out, ceiling, results, h.cfg, h.pgbench, failed)
	return results, nil
}

// concurrency is how many connections load ep: -c, or the endpoint's cap
// when it is lower.
func (h *harness) concurrency(ep *endpoint) int {
	if ep.conns > 0 && ep.conns < h.cfg.conns {
		return ep.conns
	}
	return h.cfg.conns
}

// loadEndpoint measures ep on the api at addr.
func (h *harness) loadEndpoint(ctx context.Context, addr string, ep *endpoint) stats {
	return load(ctx, newTarget(addr, ep.path, h.token), h.concurrency(ep), h.cfg.warmup, h.cfg.duration)
}

// pgbenchFor is the pgbench that replays ep's script: with as many clients
// as the api gets connections, when ep caps them.
func (h *harness) pgbenchFor(ep *endpoint) *pgbench {
	c := h.concurrency(ep)
	if c == h.cfg.conns {
		return h.pgbench
	}
	capped := *h.pgbench
	capped.clients, capped.threads = c, min(c, capped.threads)
	return &capped
}
