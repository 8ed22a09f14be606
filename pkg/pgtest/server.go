package pgtest

import (
	"context"
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
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/postgres"
)

// installHint says how to get the server binaries a private server needs.
const installHint = "fault tests start their own PostgreSQL server from the machine's binaries " +
	"(/usr/lib/postgresql/<version>/bin); install them with `apt-get install postgresql`"

// Server is a PostgreSQL server that belongs to one test, so the test can
// stop, start and restart it (fault injection) without disturbing the
// shared server other tests use. It listens on a free loopback port that
// stays the same across restarts, trusts every local connection and holds
// one migrated database, "tokka".
type Server struct {
	tb   testing.TB
	bin  string // directory of initdb, pg_ctl, postgres
	base string // everything the server owns: data, socket, log
	port int
	url  string
	mu   sync.Mutex // one pg_ctl at a time
}

// StartServer starts a private PostgreSQL server for tb in a temporary
// directory, with a "tokka" database migrated as Main migrates; it is
// stopped and removed when the test ends. The first server of a test
// binary is initialised and migrated, stopped and kept as a template (see
// clusterTemplate); every server is a copy of it, so initdb and the
// migrations run once per binary, not once per server. It fails the test,
// never skips it, when the server binaries are missing (saying how to
// install them) or the server does not start. As root it runs the server as
// the postgres user (initdb and postgres refuse to run as root).
func StartServer(tb testing.TB) *Server {
	tb.Helper()
	bin, err := serverBinaries()
	if err != nil {
		tb.Fatalf("pgtest: %v; %s", err, installHint)
	}
	template, err := clusterTemplate(bin)
	if err != nil {
		tb.Fatalf("pgtest: private server template: %v", err)
	}
	s, err := newServer(tb, bin, "tokka-pg-")
	if err != nil {
		tb.Fatalf("pgtest: private server: %v", err)
	}
	// cp -a keeps the files' owner (the postgres user, when we are root)
	// and the data directory's mode, which the server checks.
	if out, err := exec.Command("cp", "-a", template+"/.", s.dataDir()).CombinedOutput(); err != nil {
		tb.Fatalf("pgtest: copy the template cluster: %v\n%s", err, out)
	}
	s.Start()
	s.url = s.dsn("tokka")
	return s
}

// newServer makes the directories of a server for tb under a new temporary
// directory named after prefix, and picks its port; the server is stopped
// (if it runs) and the directory removed when tb ends.
func newServer(tb testing.TB, bin, prefix string) (*Server, error) {
	base, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	s := &Server{tb: tb, bin: bin, base: base}
	tb.Cleanup(func() {
		// Immediate: the test is over, nothing needs a clean shutdown.
		_ = s.pgCtl("stop", "-m", "immediate", "-w")
		_ = os.RemoveAll(base)
	})
	if err := s.prepare(); err != nil {
		return nil, err
	}
	if s.port, err = freePort(); err != nil {
		return nil, err
	}
	return s, nil
}

// cluster is the data directory every private server of this test binary
// is copied from: initialised, its "tokka" database migrated, and cleanly
// shut down.
var cluster struct {
	once sync.Once
	base string // the directory holding it; removed by removeClusterTemplate
	dir  string
	err  error
}

// clusterTemplate returns the template data directory, building it on the
// first call: initdb, a start, CREATE DATABASE tokka, the migrations and a
// fast (clean) stop, so a copy starts without recovery.
func clusterTemplate(bin string) (string, error) {
	cluster.once.Do(func() {
		cluster.dir, cluster.err = buildCluster(bin)
	})
	return cluster.dir, cluster.err
}

func buildCluster(bin string) (string, error) {
	base, err := os.MkdirTemp("", "tokka-pg-template-")
	if err != nil {
		return "", err
	}
	cluster.base = base
	s := &Server{bin: bin, base: base}
	if err := s.prepare(); err != nil {
		return "", err
	}
	if s.port, err = freePort(); err != nil {
		return "", err
	}
	if err := s.run("initdb", "-D", s.dataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync"); err != nil {
		return "", fmt.Errorf("initdb: %w", err)
	}
	if err := s.start(); err != nil {
		return "", err
	}
	defer s.pgCtl("stop", "-m", "immediate", "-w") //nolint:errcheck // only reached on failure: a clean stop is below
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := sqlx.Open("postgres", s.dsn("postgres"))
	if err != nil {
		return "", err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE tokka`); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	if err := postgres.Migrate(ctx, s.dsn("tokka")); err != nil {
		return "", fmt.Errorf("migrate: %w", err)
	}
	_ = admin.Close()
	if err := s.pgCtl("stop", "-m", "fast", "-w", "-t", "60"); err != nil {
		return "", fmt.Errorf("stop: %w", err)
	}
	return s.dataDir(), nil
}

// removeClusterTemplate removes the template data directory, if one was
// built; Main calls it when the package's tests are done.
func removeClusterTemplate() {
	if cluster.base != "" {
		_ = os.RemoveAll(cluster.base)
	}
}

// URL is the migrated database's URL, as the superuser that owns its tables
// (the api's and the syncer's storage switch roles per transaction).
func (s *Server) URL() string { return s.url }

// Stop shuts the server down the way an operator's restart does (fast:
// sessions are terminated with admin_shutdown), and returns once it is
// down. It fails the test if pg_ctl fails.
func (s *Server) Stop() {
	s.tb.Helper()
	if err := s.pgCtl("stop", "-m", "fast", "-w", "-t", "60"); err != nil {
		s.tb.Fatalf("pgtest: stop: %v", err)
	}
}

// Start starts the (stopped) server on its port and returns once it accepts
// connections. It fails the test if the server does not come up.
func (s *Server) Start() {
	s.tb.Helper()
	if err := s.start(); err != nil {
		s.tb.Fatalf("pgtest: %v", err)
	}
}

// start is Start returning its error, with the server's log.
// wal_writer_delay is short because commits are asynchronous here
// (synchronous_commit=off): the WAL writer, not the commit, writes WAL out
// and so hands it to a replica, and its default 200ms would be most of
// what a test waiting for replay waits.
func (s *Server) start() error {
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=off -c synchronous_commit=off "+
		"-c full_page_writes=off -c max_connections=100 -c wal_writer_delay=10ms", s.port, s.socketDir())
	if err := s.pgCtl("start", "-w", "-t", "60", "-l", s.logFile(), "-o", opts); err != nil {
		log, _ := os.ReadFile(s.logFile())
		return fmt.Errorf("start: %w\nserver log:\n%s", err, log)
	}
	return nil
}

// Restart stops the server (fast) and starts it again.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	s.Start()
}

func (s *Server) dataDir() string   { return filepath.Join(s.base, "data") }
func (s *Server) socketDir() string { return filepath.Join(s.base, "sock") }
func (s *Server) logFile() string   { return filepath.Join(s.base, "server.log") }

func (s *Server) dsn(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Host: "127.0.0.1:" + strconv.Itoa(s.port),
		Path: "/" + db, RawQuery: "sslmode=disable&connect_timeout=10"}
	return u.String()
}

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
	return "", fmt.Errorf("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql")
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

// StartReplica makes a streaming replica of s (which must be running):
// pg_basebackup -R copies s into a temporary directory of its own, and the
// copy starts as a hot standby on another free loopback port, replaying
// what s writes. It is stopped and removed when the test ends; it fails the
// test if the copy or the start fails. The replica's URL names the same
// "tokka" database; WaitForReplay waits until it has caught up.
func (s *Server) StartReplica(tb testing.TB) *Server {
	tb.Helper()
	r, err := newServer(tb, s.bin, "tokka-pg-replica-")
	if err != nil {
		tb.Fatalf("pgtest: replica: %v", err)
	}
	// The data directory must be empty for pg_basebackup; prepare made it
	// with the owner and mode the server wants.
	if err := r.run("pg_basebackup", "-D", r.dataDir(), "-R", "-X", "stream", "-c", "fast",
		"-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-U", "postgres", "--no-sync"); err != nil {
		tb.Fatalf("pgtest: pg_basebackup: %v", err)
	}
	r.Start()
	r.url = r.dsn("tokka")
	return r
}

// WaitForReplay waits (up to a minute) until replica has replayed
// everything s had written when it was called; it fails the test otherwise.
func (s *Server) WaitForReplay(tb testing.TB, replica *Server) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	primary, err := sqlx.Open("postgres", s.dsn("postgres"))
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	defer primary.Close()
	standby, err := sqlx.Open("postgres", replica.dsn("postgres"))
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	defer standby.Close()
	// The target is the end of a WAL record inserted now, after everything
	// committed before the call (the WAL writer sends it on within
	// wal_writer_delay). pg_current_wal_lsn() is not:
	// it is how far WAL has been written out, and the private server
	// commits with synchronous_commit=off, so a commit that has returned
	// may still sit in WAL buffers behind that position, and the replica
	// would look caught up without it. pg_current_wal_insert_lsn() would
	// include it but is not always a position the replica reports (at a
	// page boundary it points past the next page's header). A restore
	// point is a record the replica replays like any other, and its end
	// is exactly what pg_last_wal_replay_lsn() then says.
	var lsn string
	if err := primary.GetContext(ctx, &lsn, `SELECT pg_create_restore_point('pgtest WaitForReplay')::text`); err != nil {
		tb.Fatalf("pgtest: primary's WAL position: %v", err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var caughtUp bool
		err := standby.GetContext(ctx, &caughtUp, `SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)`, lsn)
		if err == nil && caughtUp {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("pgtest: the replica did not replay up to %s within a minute (last error: %v)", lsn, err)
		case <-tick.C:
		}
	}
}
