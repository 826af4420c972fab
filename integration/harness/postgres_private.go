package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PrivatePostgres is a PostgreSQL cluster of the test's own, made by deploy/local/postgres.sh in
// a temporary state directory on a free port: a test that restarts or reconfigures PostgreSQL
// must not touch the server that the other (parallel) tests use. The script creates the role
// pgoutbox (LOGIN REPLICATION) and the database pgoutbox, like the shared development server.
type PrivatePostgres struct {
	t     *testing.T
	env   []string
	State string
	Port  int
	// Version is the server's major version (e.g. "17").
	Version string
	// dir is the cluster's directory under state: postgres.sh keeps version 15 in pg/, others in pg-N/.
	Dir string
	// URL connects as pgoutbox to the database pgoutbox over TCP.
	URL string
}

// postgresScript is deploy/local/postgres.sh, which makes, starts and stops clusters.
func postgresScript() string { return filepath.Join(RepoRoot(), "deploy", "local", "postgres.sh") }

// StartPrivatePostgres creates and starts a private cluster that the end of the test stops (its
// files go with the test's temporary directory), of postgres.sh's default version (or
// PGOUTBOX_PG_VERSION's, when set).
func StartPrivatePostgres(t *testing.T) *PrivatePostgres {
	t.Helper()
	return StartPrivatePostgresVersion(t, "")
}

// DefaultPGVersion is the major version postgres.sh starts when PGOUTBOX_PG_VERSION is unset.
const DefaultPGVersion = "15"

// StartPrivatePostgresVersion is startPrivatePostgres of the given major version ("" for the
// default). The server binaries are installed once and shared with the development server's
// cache; a version whose binaries cannot be installed skips the test, and fails it under CI=true.
func StartPrivatePostgresVersion(t *testing.T, version string) *PrivatePostgres {
	t.Helper()
	p := NewPrivatePostgres(t, version)
	if out, err := p.run("start"); err != nil {
		if strings.Contains(out, "initdb") || strings.Contains(out, "apt-get") || strings.Contains(out, "cannot install") {
			Unavailable(t, "cannot create a private PostgreSQL %s cluster: %v\n%s", p.Version, err, out)
		}
		t.Fatalf("postgres.sh start: %v\n%s", err, out)
	}
	p.checkVersion(t)
	return p
}

// NewPrivatePostgres prepares a private cluster's state directory, port and environment, and
// stops the server at the end of the test; nothing is created or started yet.
func NewPrivatePostgres(t *testing.T, version string) *PrivatePostgres {
	t.Helper()
	if version == "" {
		version = Getenv("PGOUTBOX_PG_VERSION", DefaultPGVersion)
	}
	dir := "pg"
	if version != DefaultPGVersion {
		dir = "pg-" + version
	}
	if testing.Short() {
		t.Skip("a private PostgreSQL cluster takes a few seconds to create; skipped with -short")
	}
	state := t.TempDir()
	// As root the script runs the server as the postgres user, which must reach $STATE/pg:
	// t.TempDir makes the directory and its parent 0700. (The script would grant o+x itself;
	// doing it here keeps the test independent of that detail.)
	if os.Geteuid() == 0 {
		for _, dir := range []string{filepath.Dir(state), state} {
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	port := FreePort(t)
	p := &PrivatePostgres{
		t:       t,
		State:   state,
		Port:    port,
		Version: version,
		Dir:     dir,
		env: append(os.Environ(),
			"PGOUTBOX_STATE_DIR="+state,
			fmt.Sprintf("PGOUTBOX_PG_PORT=%d", port),
			"PGOUTBOX_PG_VERSION="+version,
			"PGOUTBOX_PG_BIN_CACHE="+pgBinCache(t),
		),
		URL: fmt.Sprintf("postgres://pgoutbox:pgoutbox@127.0.0.1:%d/pgoutbox", port),
	}
	t.Cleanup(func() {
		if out, err := p.run("stop"); err != nil {
			t.Errorf("postgres.sh stop: %v\n%s", err, out)
		}
	})
	return p
}

// pgBinCache returns where postgres.sh caches extracted server binaries for the development
// server, so that private clusters share them instead of installing them per test.
func pgBinCache(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("bash", postgresScript(), "bincache").Output()
	if err != nil {
		t.Fatalf("postgres.sh bincache: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// checkVersion fails the test unless the server runs the major version asked for: a matrix that
// silently ran the default version everywhere would prove nothing.
func (p *PrivatePostgres) checkVersion(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var num int
	if err := QueryRow(ctx, p.URL, `SELECT current_setting('server_version_num')::int`, nil, &num); err != nil {
		t.Fatalf("read server_version_num: %v", err)
	}
	if got := fmt.Sprint(num / 10000); got != p.Version {
		t.Fatalf("private cluster runs PostgreSQL %s (server_version_num %d), want %s", got, num, p.Version)
	}
}

func (p *PrivatePostgres) run(arg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", postgresScript(), arg)
	cmd.Env = p.env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err == nil {
		p.t.Logf("private PostgreSQL %s 127.0.0.1:%d %s in %s", p.Version, p.Port, arg, time.Since(start).Round(time.Millisecond))
	}
	return string(out), err
}

// Script runs deploy/local/postgres.sh arg (start, stop, kill, promote...) on the cluster,
// failing the test if it fails.
func (p *PrivatePostgres) Script(arg string) {
	p.t.Helper()
	if out, err := p.run(arg); err != nil {
		p.t.Fatalf("postgres.sh %s: %v\n%s", arg, err, out)
	}
}

// Stop shuts the server down with pg_ctl's fast mode: sessions are ended, a shutdown checkpoint
// is written. Its data stays for start.
func (p *PrivatePostgres) Stop() { p.Script("stop") }

// StopImmediate shuts the server down the way pg_ctl's immediate mode does — SIGQUIT to the
// postmaster: every process exits at once, without a shutdown checkpoint, so the next start
// runs crash recovery and the slots come back with the positions of the last checkpoint.
func (p *PrivatePostgres) StopImmediate() {
	p.t.Helper()
	pidFile := filepath.Join(p.State, p.Dir, "data", "postmaster.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		p.t.Fatalf("read %s: %v", pidFile, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		p.t.Fatalf("%s: no pid on its first line: %v", pidFile, err)
	}
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
		p.t.Fatalf("SIGQUIT the postmaster %d: %v", pid, err)
	}
	// Like pg_ctl, wait until the postmaster has removed its pid file (it does on every exit)
	// and is gone — or a zombie, if nothing reaps it here.
	err = Eventually(context.Background(), time.Minute, 20*time.Millisecond, func(context.Context) error {
		_, statErr := os.Stat(pidFile)
		stat, procErr := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		_, state, _ := strings.Cut(string(stat), ") ")
		if os.IsNotExist(statErr) && (procErr != nil || strings.HasPrefix(state, "Z")) {
			return nil
		}
		return fmt.Errorf("the postmaster %d still runs after SIGQUIT", pid)
	})
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("private PostgreSQL 127.0.0.1:%d stopped (immediate) in %s", p.Port, time.Since(start).Round(time.Millisecond))
}

// Start starts the server again (or the first time) and waits until it answers over TCP.
func (p *PrivatePostgres) Start() { p.Script("start") }

// Restart is stop then start.
func (p *PrivatePostgres) Restart() {
	p.Stop()
	p.Start()
}

// WaitAccepting waits until the server accepts connections again (after a crash, recovery must
// end first).
func (p *PrivatePostgres) WaitAccepting(t testing.TB, timeout time.Duration) {
	t.Helper()
	err := Eventually(context.Background(), timeout, 100*time.Millisecond, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return Exec(ctx, p.URL, "SELECT 1")
	})
	if err != nil {
		t.Errorf("private PostgreSQL not accepting connections: %v", err)
	}
}

// LogPath is the server's log file; it accumulates over restarts (pg_ctl -l appends).
func (p *PrivatePostgres) LogPath() string { return filepath.Join(p.State, p.Dir, "postgres.log") }

// Log returns the server's log so far.
func (p *PrivatePostgres) Log() string {
	b, err := os.ReadFile(p.LogPath())
	if err != nil {
		p.t.Fatalf("read the PostgreSQL log: %v", err)
	}
	return string(b)
}

// SocketDir is the directory of the server's Unix socket.
func (p *PrivatePostgres) SocketDir() string { return filepath.Join(p.State, p.Dir, "run") }

// Superuser opens a connection as the postgres superuser over the cluster's Unix socket (local
// connections are trusted), closed at the end of the test.
func (p *PrivatePostgres) Superuser(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", p.SocketDir(), p.Port)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect as superuser: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

var settingName = regexp.MustCompile(`^[a-z_][a-z0-9_.]*$`)

// SetConf sets a server setting with ALTER SYSTEM (postgresql.auto.conf) and applies it: a
// reload for the settings that allow one, a restart for those that need it (context
// 'postmaster'). It returns once a new session sees the value. E.g.
// setConf(t, "wal_sender_timeout", "10s") or setConf(t, "max_slot_wal_keep_size", "64MB").
func (p *PrivatePostgres) SetConf(t *testing.T, name, value string) {
	t.Helper()
	if !settingName.MatchString(name) {
		t.Fatalf("setConf: %q is not a setting name", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := p.Superuser(t)
	var setCtx string
	if err := conn.QueryRow(ctx, `SELECT context FROM pg_settings WHERE name = $1`, name).Scan(&setCtx); err != nil {
		t.Fatalf("setConf: unknown setting %s: %v", name, err)
	}
	sql := fmt.Sprintf(`ALTER SYSTEM SET %s = '%s'`, name, strings.ReplaceAll(value, "'", "''"))
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("setConf: %s: %v", sql, err)
	}
	if setCtx == "postmaster" {
		p.Restart()
	} else if _, err := conn.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		t.Fatalf("setConf: reload: %v", err)
	}
	// The reload is asynchronous: wait until a new session takes the value from the auto file.
	err := Eventually(ctx, time.Minute, 100*time.Millisecond, func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", p.SocketDir(), p.Port))
		if err != nil {
			return err
		}
		defer func() { _ = c.Close(context.Background()) }()
		var file string
		if err := c.QueryRow(ctx, `SELECT coalesce(sourcefile, '') FROM pg_settings WHERE name = $1`, name).Scan(&file); err != nil {
			return err
		}
		if !strings.HasSuffix(file, "postgresql.auto.conf") {
			return fmt.Errorf("source %q", file)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("setConf: %s = %s not in effect: %v", name, value, err)
	}
	t.Logf("private PostgreSQL: %s = %s", name, value)
}
