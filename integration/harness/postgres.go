package harness

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Connect opens a normal connection closed at the end of the test.
func Connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// ReplicationConn opens a replication=database connection closed at the end of the test.
func ReplicationConn(t testing.TB, url string) *pgconn.PgConn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["replication"] = "database"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("replication connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// ExecSQL runs SQL on a fresh connection, failing the test on error.
func ExecSQL(t testing.TB, url string, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Exec(ctx, url, sql, args...); err != nil {
		t.Fatal(err)
	}
}

// Exec runs SQL on a fresh connection.
func Exec(ctx context.Context, url string, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("exec %q: %w", sql, err)
	}
	return nil
}

// DropSlotAtCleanup drops the slot when the test ends, ending whatever session still holds it:
// a slot left behind pins WAL forever.
func DropSlotAtCleanup(t testing.TB, url, slot string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := DropSlot(ctx, url, slot); err != nil {
			t.Error(err)
		}
	})
}

// DropSlot drops the slot, ending whatever session holds it; a slot that does not exist is
// fine. It retries until ctx ends: a terminated walsender may hold the slot for a moment.
func DropSlot(ctx context.Context, url, slot string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("drop slot %s: %w", slot, err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	err = Eventually(ctx, time.Hour, 100*time.Millisecond, func(ctx context.Context) error {
		_, _ = conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
			WHERE slot_name = $1 AND active_pid IS NOT NULL`, slot)
		_, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE slot_name = $1`, slot)
		return err
	})
	if err != nil {
		return fmt.Errorf("drop slot %s: %w", slot, err)
	}
	return nil
}

// QueryRow runs a one-row query on a connection of its own, closed at once (the harness's
// connect keeps its connections until the test ends, too many for a polling loop).
func QueryRow(ctx context.Context, url, sql string, args []any, dest ...any) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	return conn.QueryRow(ctx, sql, args...).Scan(dest...)
}

// SlotActivePID returns the pid of the walsender streaming the slot, 0 when none.
func SlotActivePID(t *testing.T, url, slot string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var pid int
	if err := QueryRow(ctx, url, `SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = $1`, []any{slot}, &pid); err != nil {
		t.Fatalf("read slot %s: %v", slot, err)
	}
	return pid
}

// WaitSlotInactive waits until no walsender streams the slot: after a relay's death its
// walsender notices the closed socket and exits, and from then on the slot's confirmed
// position cannot move until the next relay streams.
func WaitSlotInactive(t *testing.T, url, slot string, timeout time.Duration) {
	t.Helper()
	err := Eventually(context.Background(), timeout, 20*time.Millisecond, func(context.Context) error {
		if SlotActivePID(t, url, slot) != 0 {
			return fmt.Errorf("slot %s still active after its relay died", slot)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// SlotLag is pg_current_wal_lsn() - confirmed_flush_lsn of the slot, in bytes.
func SlotLag(t *testing.T, url, slot string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var lag int64
	if err := QueryRow(ctx, url, `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1`, []any{slot}, &lag); err != nil {
		t.Fatalf("read slot %s: %v", slot, err)
	}
	return lag
}

// SlotConfirmed returns the slot's confirmed_flush_lsn, on a short-lived connection (tests poll
// it in loops; a connection kept per call until the test's end would exhaust max_connections).
func SlotConfirmed(t *testing.T, url, slot string) pglogrepl.LSN {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("read slot %s: %v", slot, err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	lsn, err := ReadSlotConfirmed(ctx, conn, slot)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// ReadSlotConfirmed reads the slot's confirmed_flush_lsn on conn (a poller keeps one open).
func ReadSlotConfirmed(ctx context.Context, conn *pgx.Conn, slot string) (pglogrepl.LSN, error) {
	var s string
	err := conn.QueryRow(ctx, `SELECT coalesce(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&s)
	if err != nil {
		return 0, fmt.Errorf("read slot %s: %w", slot, err)
	}
	return pglogrepl.ParseLSN(s)
}

// MustLSN parses an LSN's text (e.g. "0/16B3748"), failing the test if it is not one.
func MustLSN(t *testing.T, s string) pglogrepl.LSN {
	t.Helper()
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// CurrentWAL returns pg_current_wal_lsn() as text.
func CurrentWAL(t *testing.T, url string) string {
	t.Helper()
	var s string
	if err := Connect(t, url).QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// WaitConfirmedPast waits until the slot's confirmed position reaches lsn.
func WaitConfirmedPast(t *testing.T, e Outbox, lsn string, timeout time.Duration) {
	t.Helper()
	want := MustLSN(t, lsn)
	err := Eventually(context.Background(), timeout, 200*time.Millisecond, func(context.Context) error {
		if got := SlotConfirmed(t, e.DatabaseURL, e.Name); got < want {
			return fmt.Errorf("slot confirmed %s, want >= %s", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
