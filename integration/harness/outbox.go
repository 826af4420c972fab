package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// RelayBinary is the pgoutbox binary the tests run (TestMain builds it with the race detector:
// the relay tests run the real process, so that killing it is a real crash).
var RelayBinary string

// Outbox is one private outbox: table, publication, slot and topic share one name.
type Outbox struct {
	Services
	Name string
}

// Env returns the configuration of the relay for this outbox, as PGOUTBOX_* variables after
// this process's environment: metrics off, debug logs. Variables appended to it win.
func (e Outbox) Env() []string {
	return append(os.Environ(),
		"PGOUTBOX_DATABASE_URL="+e.DatabaseURL,
		"PGOUTBOX_KAFKA_BROKERS="+strings.Join(e.Brokers, ","),
		"PGOUTBOX_TABLE="+e.Name,
		"PGOUTBOX_SLOT="+e.Name,
		"PGOUTBOX_PUBLICATION="+e.Name,
		"PGOUTBOX_TOPIC="+e.Name,
		"PGOUTBOX_HTTP_ADDR=",
		"PGOUTBOX_LOG_LEVEL=debug",
	)
}

// Command runs one command of bin (a pgoutbox binary) for the outbox to completion, with
// extraEnv after Env, and returns its combined output.
func (e Outbox) Command(ctx context.Context, bin string, extraEnv []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(e.Env(), extraEnv...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Drop removes the outbox's slot (ending whatever session holds it), publications (the
// outbox's and recover's), table and topic, and says what it could not remove; what does not exist is fine.
func (e Outbox) Drop(ctx context.Context) error {
	ident := pgx.Identifier{e.Name}.Sanitize()
	err := errors.Join(DropSlot(ctx, e.DatabaseURL, e.Name),
		Exec(ctx, e.DatabaseURL, "DROP PUBLICATION IF EXISTS "+ident),
		Exec(ctx, e.DatabaseURL, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{e.Name + "_recovery"}.Sanitize()),
		Exec(ctx, e.DatabaseURL, "DROP TABLE IF EXISTS "+ident),
		DeleteTopic(ctx, e.Brokers, e.Name))
	if err != nil {
		return fmt.Errorf("drop outbox %s: %w", e.Name, err)
	}
	return nil
}

// NewOutbox creates the outbox with `pgoutbox setup` (table, publication, slot, a topic of
// `partitions` partitions) and removes all of it when the test ends.
func NewOutbox(t *testing.T, partitions int) Outbox {
	t.Helper()
	return NewOutboxOn(t, NeedServices(t), partitions)
}

// NewOutboxOn is NewOutbox on the given services (e.g. a private Kafka broker); setupArgs are
// added to `pgoutbox setup` (e.g. --failover).
func NewOutboxOn(t *testing.T, svc Services, partitions int, setupArgs ...string) Outbox {
	t.Helper()
	e := Outbox{Services: svc, Name: UniqueName(t)}
	DropSlotAtCleanup(t, e.DatabaseURL, e.Name)
	t.Cleanup(func() {
		ExecInCleanup(t, e.DatabaseURL, fmt.Sprintf(`DROP PUBLICATION IF EXISTS %s`, e.Name))
		ExecInCleanup(t, e.DatabaseURL, fmt.Sprintf(`DROP PUBLICATION IF EXISTS %s_recovery`, e.Name))
		ExecInCleanup(t, e.DatabaseURL, fmt.Sprintf(`DROP TABLE IF EXISTS %s`, e.Name))
		DeleteTopicQuietly(e.Brokers, e.Name)
	})
	out, err := e.Pgoutbox(t, append([]string{"setup", "--partitions", fmt.Sprint(partitions)}, setupArgs...)...)
	if err != nil {
		t.Fatalf("pgoutbox setup: %v\n%s", err, out)
	}
	return e
}

// NewSchemaOutbox creates an outbox in a schema of its own (table <name>.outbox, its publications,
// slot and topic share the name) with `pgoutbox setup`, and removes all of it when the test ends.
// It returns the relay settings the outbox needs after Env: the table and a message prefix of its
// own — with the default prefix, every other test's relay on the shared server would publish this
// test's pgoutbox_send() events too.
func NewSchemaOutbox(t *testing.T, partitions int) (e Outbox, relayEnv []string) {
	t.Helper()
	e = Outbox{Services: NeedServices(t), Name: UniqueName(t)}
	ExecSQL(t, e.DatabaseURL, "CREATE SCHEMA "+e.Name)
	DropSlotAtCleanup(t, e.DatabaseURL, e.Name)
	t.Cleanup(func() {
		ExecInCleanup(t, e.DatabaseURL, "DROP PUBLICATION IF EXISTS "+e.Name)
		ExecInCleanup(t, e.DatabaseURL, "DROP PUBLICATION IF EXISTS "+e.Name+"_recovery")
		ExecInCleanup(t, e.DatabaseURL, "DROP SCHEMA "+e.Name+" CASCADE")
		DeleteTopicQuietly(e.Brokers, e.Name)
	})
	relayEnv = []string{"PGOUTBOX_TABLE=" + e.Name + ".outbox", "PGOUTBOX_MESSAGE_PREFIX=" + e.Name}
	if out, err := e.PgoutboxWith(t, relayEnv, "setup", "--partitions", fmt.Sprint(partitions)); err != nil {
		t.Fatalf("pgoutbox setup: %v\n%s", err, out)
	}
	return e, relayEnv
}

// NewOutboxWithDeadLetter is NewOutbox with one partition, set up again with --on-bad-row
// dead-letter so that the dead-letter topic exists too; it returns that topic's name and
// deletes it when the test ends.
func NewOutboxWithDeadLetter(t *testing.T) (e Outbox, dlq string) {
	t.Helper()
	e = NewOutbox(t, 1)
	dlq = e.Name + ".dlq"
	if out, err := e.Pgoutbox(t, "setup", "--partitions", "1", "--on-bad-row", "dead-letter"); err != nil {
		t.Fatalf("setup of the dead-letter topic: %v\n%s", err, out)
	}
	t.Cleanup(func() { DeleteTopicQuietly(e.Brokers, dlq) })
	return e, dlq
}

// DeleteTopicQuietly deletes a test's topic in a cleanup, ignoring errors as the tests always have (a
// private broker may already be stopped).
func DeleteTopicQuietly(brokers []string, topic string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = DeleteTopic(ctx, brokers, topic)
}

// ExecInCleanup is ExecSQL for cleanups: it reports instead of stopping the test.
func ExecInCleanup(t *testing.T, url, sql string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Exec(ctx, url, sql); err != nil {
		t.Errorf("cleanup %q: %v", sql, err)
	}
}

// Pgoutbox runs one command of RelayBinary to completion and returns its combined output,
// after checking its JSON log lines (CheckLogLines).
func (e Outbox) Pgoutbox(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := e.Command(ctx, RelayBinary, nil, args...)
	CheckLogLines(t, "pgoutbox "+strings.Join(args, " "), out)
	return out, err
}

// PgoutboxWith runs one command of RelayBinary to completion with extra environment.
func (e Outbox) PgoutboxWith(t *testing.T, extraEnv []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return e.Command(ctx, RelayBinary, extraEnv, args...)
}

// RunExit runs one command of RelayBinary (as Pgoutbox does) and returns its exit status and
// output.
func (e Outbox) RunExit(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := e.Pgoutbox(t, args...)
	return exitStatus(t, args, out, err)
}

// StatusExit runs `pgoutbox status` with the relay's environment and returns its exit status.
func (e Outbox) StatusExit(t *testing.T, extraEnv ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := e.Command(ctx, RelayBinary, extraEnv, "status")
	return exitStatus(t, []string{"status"}, out, err)
}

// exitStatus is a finished command's exit status; a command that could not run fails the test.
func exitStatus(t *testing.T, args []string, out string, err error) (int, string) {
	t.Helper()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out
	case errors.As(err, &exit):
		return exit.ExitCode(), out
	}
	t.Fatalf("pgoutbox %s: %v\n%s", strings.Join(args, " "), err, out)
	return -1, ""
}

// BuildRelay builds pgoutbox into the test's temporary directory, with or without -race.
func BuildRelay(t *testing.T, race bool) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pgoutbox")
	start := time.Now()
	if err := BuildPgoutbox(context.Background(), bin, race); err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s (race=%v) in %s", bin, race, time.Since(start).Round(time.Millisecond))
	return bin
}

// BuildPgoutbox builds ./cmd/pgoutbox into bin, with the race detector or without (the
// benchmark builds without: the detector multiplies both the time and the memory it measures).
func BuildPgoutbox(ctx context.Context, bin string, race bool) error {
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/pgoutbox")...)
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/pgoutbox: %w\n%s", err, out)
	}
	return nil
}
