// Package pgserver runs private PostgreSQL servers from the machine's own
// binaries (/usr/lib/postgresql/<version>/bin): a throwaway server in a
// temporary directory on a free loopback port, and streaming replicas of it
// made with pg_basebackup. Tests use it through pgtest to stop and restart
// the server under the api; bench/api uses it to measure reads on a replica.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // the Postgres driver
)

// installHint says how to get the server binaries.
const installHint = "install them with `apt-get install postgresql`"

// MaxConnections is the max_connections every Server is started with.
const MaxConnections = 100

// Server is a PostgreSQL server this process started. It listens on a
// loopback port that stays the same across restarts, trusts every local
// connection (its superuser is postgres), and is tuned for throwaway data:
// fsync, synchronous_commit and full_page_writes are off.
type Server struct {
	bin  string // directory of initdb, pg_ctl, postgres, pg_basebackup
	base string // everything the server owns: data, socket, log
	port int
	mu   sync.Mutex // one pg_ctl at a time
}

// Start initialises a server in a new temporary directory and starts it. It
// fails when the server binaries are missing (saying how to install them),
// or when initdb or the start fails; then nothing is left behind. As root it
// runs the server as the postgres user (initdb and postgres refuse to run as
// root). Remove stops it and deletes its directory.
func Start() (*Server, error) {
	bin, err := serverBinaries()
	if err != nil {
		return nil, err
	}
	s, err := create(bin, "tokka-pg-")
	if err != nil {
		return nil, err
	}
	if err := s.run("initdb", "-D", s.dataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync"); err != nil {
		s.Remove()
		return nil, fmt.Errorf("initdb: %w", err)
	}
	if err := s.Start(); err != nil {
		s.Remove()
		return nil, err
	}
	return s, nil
}

// StartReplica makes a streaming replica of s, which must be running:
// pg_basebackup -R copies s into a new temporary directory, and the copy
// starts as a hot standby on another free loopback port, replaying what s
// writes from then on (WaitForReplay waits until it has caught up). It fails
// if the copy or the start fails; then nothing is left behind. Remove stops
// the replica and deletes its directory.
func (s *Server) StartReplica() (*Server, error) {
	r, err := create(s.bin, "tokka-pg-replica-")
	if err != nil {
		return nil, err
	}
	// The data directory must be empty for pg_basebackup; create made it
	// with the owner and mode the server wants.
	if err := r.run("pg_basebackup", "-D", r.dataDir(), "-R", "-X", "stream", "-c", "fast",
		"-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-U", "postgres", "--no-sync"); err != nil {
		r.Remove()
		return nil, fmt.Errorf("pg_basebackup: %w", err)
	}
	if err := r.Start(); err != nil {
		r.Remove()
		return nil, err
	}
	return r, nil
}

// StartCopy starts a new server whose data directory is a copy of dir, the
// data directory of a cleanly stopped server of the same binaries (see
// DataDir): a server made once (initdb, a schema) can be copied for many
// tests in about a second. It fails if the copy or the start fails; then
// nothing is left behind. Remove stops it and deletes its directory.
func StartCopy(dir string) (*Server, error) {
	bin, err := serverBinaries()
	if err != nil {
		return nil, err
	}
	s, err := create(bin, "tokka-pg-")
	if err != nil {
		return nil, err
	}
	// cp -a keeps the files' owner (the postgres user, when we are root)
	// and the data directory's mode, which the server checks.
	if out, err := exec.Command("cp", "-a", dir+"/.", s.dataDir()).CombinedOutput(); err != nil {
		s.Remove()
		return nil, fmt.Errorf("copy %s: %w\n%s", dir, err, out)
	}
	if err := s.Start(); err != nil {
		s.Remove()
		return nil, err
	}
	return s, nil
}

// DataDir is the server's data directory; once the server is stopped
// (Stop), StartCopy can start copies of it.
func (s *Server) DataDir() string { return s.dataDir() }

// create makes the directories of a server that is not initialised yet and
// picks its port.
func create(bin, prefix string) (*Server, error) {
	base, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, base: base}
	if err := s.prepare(); err != nil {
		_ = os.RemoveAll(base)
		return nil, err
	}
	if s.port, err = freePort(); err != nil {
		_ = os.RemoveAll(base)
		return nil, err
	}
	return s, nil
}

// URL is the server's database db, as the superuser postgres.
func (s *Server) URL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Host: s.Addr(),
		Path: "/" + db, RawQuery: "sslmode=disable&connect_timeout=10"}
	return u.String()
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Start starts the (stopped) server on its port and returns once it accepts
// connections; when it does not come up, the error carries the server log.
// wal_writer_delay is short because commits are asynchronous here
// (synchronous_commit=off): the WAL writer, not the commit, writes WAL out
// and so hands it to a replica, and its default 200ms would be most of what
// a wait for replay waits.
func (s *Server) Start() error {
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=off -c synchronous_commit=off "+
		"-c full_page_writes=off -c max_connections=%d -c wal_writer_delay=10ms", s.port, s.socketDir(), MaxConnections)
	if err := s.pgCtl("start", "-w", "-t", "60", "-l", s.logFile(), "-o", opts); err != nil {
		log, _ := os.ReadFile(s.logFile())
		return fmt.Errorf("start: %w\nserver log:\n%s", err, log)
	}
	return nil
}

// Stop shuts the server down the way an operator's restart does (fast:
// sessions are terminated with admin_shutdown) and returns once it is down,
// or pg_ctl's error.
func (s *Server) Stop() error {
	if err := s.pgCtl("stop", "-m", "fast", "-w", "-t", "60"); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	return nil
}

// Remove stops the server at once (immediate: its data is thrown away, so
// nothing needs a clean shutdown) and deletes its directory. Errors are
// ignored: it runs on the way out.
func (s *Server) Remove() {
	_ = s.pgCtl("stop", "-m", "immediate", "-w")
	_ = os.RemoveAll(s.base)
}

func (s *Server) dataDir() string   { return filepath.Join(s.base, "data") }
func (s *Server) socketDir() string { return filepath.Join(s.base, "sock") }
func (s *Server) logFile() string   { return filepath.Join(s.base, "server.log") }

// prepare makes the directories the server writes to; as root they are
// handed to the postgres user, and the base directory is made traversable.
func (s *Server) prepare() error {
	for _, d := range []string{s.dataDir(), s.socketDir()} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running as root needs a postgres user to run the server as: %w; %s", err, installHint)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(s.base, 0o755); err != nil {
		return err
	}
	for _, p := range []string{s.base, s.dataDir(), s.socketDir()} {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) pgCtl(args ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.run("pg_ctl", append([]string{"-D", s.dataDir()}, args...)...)
}

// run runs one of the server binaries, as the postgres user when we are root.
func (s *Server) run(name string, args ...string) error {
	path := filepath.Join(s.bin, name)
	cmd := exec.Command(path, args...)
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	cmd.Dir = s.base
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// serverBinaries finds the newest installed PostgreSQL's bin directory.
func serverBinaries() (string, error) {
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(found, func(i, j int) bool { return version(found[i]) < version(found[j]) })
	for i := len(found) - 1; i >= 0; i-- {
		dir := filepath.Dir(found[i])
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql; %s", installHint)
}

func version(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitForReplay waits until the streaming replica at replicaURL has
// replayed everything the primary at primaryURL had committed when it was
// called, polling until ctx ends; then it returns an error with the last
// one seen. A replicaURL whose server is not in recovery is an error at
// once. Both URLs may name any database of their server; on the
// primary the user must be allowed pg_create_restore_point (a superuser,
// or granted EXECUTE on it).
func WaitForReplay(ctx context.Context, primaryURL, replicaURL string) error {
	primary, err := sqlx.Open("postgres", primaryURL)
	if err != nil {
		return err
	}
	defer primary.Close()
	standby, err := sqlx.Open("postgres", replicaURL)
	if err != nil {
		return err
	}
	defer standby.Close()
	// The target is the end of a WAL record inserted now, after everything
	// committed before the call (the WAL writer sends it on within
	// wal_writer_delay). pg_current_wal_lsn() is not:
	// it is how far WAL has been written out, and a server that commits
	// with synchronous_commit=off (as Server does) may still hold a commit
	// that has returned in its WAL buffers behind that position, and the
	// replica would look caught up without it. pg_current_wal_insert_lsn()
	// would include it but is not always a position the replica reports
	// (at a page boundary it points past the next page's header). A restore
	// point is a record the replica replays like any other, and its end is
	// exactly what pg_last_wal_replay_lsn() then says.
	var lsn string
	if err := primary.GetContext(ctx, &lsn, `SELECT pg_create_restore_point('pgserver WaitForReplay')::text`); err != nil {
		return fmt.Errorf("the primary's WAL position: %w", err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var state struct {
			Recovering bool `db:"recovering"`
			CaughtUp   bool `db:"caught_up"`
		}
		err := standby.GetContext(ctx, &state, `SELECT pg_is_in_recovery() AS recovering,
			coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false) AS caught_up`, lsn)
		if err == nil && state.CaughtUp {
			return nil
		}
		if err == nil && !state.Recovering {
			return errors.New("the replica is not in recovery: it is not a standby (pg_is_in_recovery() is false)")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the replica did not replay up to %s: %w (last error: %v)", lsn, ctx.Err(), err)
		case <-tick.C:
		}
	}
}
