//go:build integration

package integration

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestFault_PostgresRestart: a private PostgreSQL is shut down (fast mode) and started again
// while writers commit rows and the relay streams a backlog. The relay process survives: it
// logs the lost connection, retries with a growing backoff while the server is down, and
// resumes from the slot once it is back; the writers ride the restart out too (an interrupted
// transaction is settled by looking for its rows). Every committed row arrives, in order,
// exactly once: the resumed session finds what the first one had sent at the partitions' tails.
func TestFault_PostgresRestart(t *testing.T) { testPostgresRestart(t, false) }

// TestFault_PostgresImmediateRestart is TestFault_PostgresRestart with an immediate shutdown
// (SIGQUIT to the postmaster, no shutdown checkpoint): the server runs crash recovery when it
// starts again, and the slot comes back with the position it last saved to disk (at a
// checkpoint, or when its restart position moved), which may lie well before what the relay had
// confirmed — the resumed session streams again rows that are in Kafka already, and must not
// send them again.
func TestFault_PostgresImmediateRestart(t *testing.T) { testPostgresRestart(t, true) }

func testPostgresRestart(t *testing.T, immediate bool) {
	if testing.Short() {
		t.Skip("about a minute; skipped with -short")
	}
	t.Parallel()
	const partitions = 3
	const down = 6 * time.Second // attempts at about 0.5s, 1.5s, 3.5s: the backoff shows
	pg := harness.StartPrivatePostgres(t)
	e := harness.NewOutboxOn(t, harness.Services{DatabaseURL: pg.URL, Brokers: harness.NeedKafka(t)}, partitions)
	w := harness.FaultWorkload{Workload: harness.Workload{Writers: 4, Rows: 20_000, Channels: 50, MaxTxnRows: 10}, Resilient: true}
	harness.PrepareWorkload(t, e, w.Channels)

	relay := e.StartRelay(t)
	relay.WaitLog("streaming started", time.Minute)
	run := harness.StartWorkload(t, e, w)
	harness.WaitTopicEnd(t, e, partitions, 2_000, time.Minute) // mid-stream

	// End offsets before the stop: records after them were sent either by the first session in
	// its last moments (first copies) or by the next one (repeats are checked against its start).
	ends := harness.EndOffsets(t, e, partitions)
	confirmedBefore := harness.SlotConfirmed(t, pg.URL, e.Name)
	if immediate {
		pg.StopImmediate()
	} else {
		pg.Stop()
	}
	stopped := time.Now()
	time.Sleep(down)
	pg.Start()
	waitLogCount(t, relay, "streaming started", 2, 2*time.Minute)
	resumed := time.Since(stopped)
	committedAtRestart := run.Committed()

	committed := run.Wait(t)
	recs := harness.FinishDelivery(t, e, committed, 3*time.Minute)
	if !relay.Running() {
		t.Fatalf("the relay exited: %v", relay.Err)
	}
	starts := relay.StartLSNs(t)
	retries := relay.LogEntries("replication connection lost; reconnecting")
	var waits []time.Duration
	for _, m := range retries {
		text, _ := m["retry_in"].(string) // a duration with its unit, e.g. "1.5s"
		d, err := time.ParseDuration(text)
		if err != nil {
			t.Fatalf("retry_in %q is not a duration: %v", m["retry_in"], err)
		}
		waits = append(waits, d)
	}
	if len(waits) < 3 {
		t.Errorf("the relay logged %d reconnection attempts while PostgreSQL was down for %s, want at least 3: %v", len(waits), down, waits)
	}
	for i := 1; i < len(waits); i++ {
		if waits[i] < waits[i-1] {
			t.Errorf("reconnection backoff went down: %v", waits)
			break
		}
	}
	if len(waits) >= 3 && waits[2] < 2*waits[0] {
		t.Errorf("reconnection backoff does not grow: %v", waits)
	}
	relay.Stop(30 * time.Second)

	dups := checkDelivery(t, recs, committed, partitions)
	checkDuplicatesUnconfirmed(t, recs, []killPoint{{confirmed: starts[len(starts)-1], ends: ends}})
	checkNoDuplicates(t, dups, len(recs))
	d := dedupeOf(relay)
	if d.warnings() > 0 {
		t.Errorf("the relay did not trust its own partitions' tails after the restart: %v", d.distrusted)
	}
	// PostgreSQL 15 keeps a logical slot's confirmed position in memory and writes it at a
	// shutdown checkpoint only if the slot is otherwise dirty (PostgreSQL 17 always does): the
	// resumed session may start before the position confirmed before the stop, re-sending rows
	// (duplicates, never a gap).
	mode := map[bool]string{false: "fast", true: "immediate"}[immediate]
	t.Logf("PostgreSQL down (%s shutdown) %s; relay streaming again %s after the stop, after %d attempts with waits %v; slot confirmed %s before the stop, session resumed at %s; rows committed %d (%d when restarted), records %d, duplicates %d, skipped as already in Kafka %d",
		mode, down, resumed.Round(time.Millisecond), len(waits), waits, confirmedBefore, starts[len(starts)-1], committed.N, committedAtRestart, len(recs), dups, d.skipped)
}

// waitLogCount waits until the relay's log has n lines whose message starts with msg.
func waitLogCount(t *testing.T, p *harness.Relay, msg string, n int, timeout time.Duration) {
	t.Helper()
	err := harness.Eventually(context.Background(), timeout, 100*time.Millisecond, func(context.Context) error {
		switch {
		case len(p.LogEntries(msg)) >= n:
			return nil
		case !p.Running():
			return harness.Stop(fmt.Errorf("relay exited (%s) before logging %q %d times; last lines above debug level:\n%s", fmt.Sprint(p.Err), msg, n, p.InfoTail(10)))
		}
		return fmt.Errorf("relay did not log %q %d times", msg, n)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFault_PostgresCrashRecovery: a backend of a private PostgreSQL dies of SIGKILL, so the
// server ends every session (the relay's walsender too) and runs crash recovery before it
// accepts connections again; while it replays, connection attempts are refused with SQLSTATE
// 57P03 ("the database system is in recovery mode" / "is not yet accepting connections"). About
// 1 GB of WAL written since the last checkpoint makes the replay last long enough (seconds) for
// the relay's first reconnection attempts (after 0.5-0.75 s, then 1-1.5 s more) to meet it. The relay must treat that answer like a refused connection
// — wait and retry — and resume from the slot; every committed row arrives, in order.
func TestFault_PostgresCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("about a minute; skipped with -short")
	}
	t.Parallel()
	const partitions = 3
	pg := harness.StartPrivatePostgres(t)
	// No checkpoint while the ballast is written: the replay must cover all of it.
	pg.SetConf(t, "max_wal_size", "8GB")
	pg.SetConf(t, "checkpoint_timeout", "1h")
	e := harness.NewOutboxOn(t, harness.Services{DatabaseURL: pg.URL, Brokers: harness.NeedKafka(t)}, partitions)
	w := harness.FaultWorkload{Workload: harness.Workload{Writers: 4, Rows: 10_000, Channels: 50, MaxTxnRows: 10}, Resilient: true}
	harness.PrepareWorkload(t, e, w.Channels)

	relay := e.StartRelay(t)
	relay.WaitLog("streaming started", time.Minute)
	run := harness.StartWorkload(t, e, w)
	harness.WaitTopicEnd(t, e, partitions, 2_000, time.Minute) // mid-stream

	// WAL for the recovery to replay: a table outside the publication, written after a
	// checkpoint (so that the replay starts before it).
	su := pg.Superuser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := su.Exec(ctx, `CHECKPOINT`); err != nil {
		t.Fatal(err)
	}
	ballast := e.Name + "_ballast"
	harness.ExecSQL(t, pg.URL, fmt.Sprintf(`CREATE TABLE %s (v text)`, ballast))
	t.Cleanup(func() { harness.ExecInCleanup(t, pg.URL, fmt.Sprintf(`DROP TABLE IF EXISTS %s`, ballast)) })
	for range 10 { // about 1 GB of WAL: a replay of 2-5 s here
		if err := harness.Exec(ctx, pg.URL, fmt.Sprintf(`INSERT INTO %s SELECT repeat(md5(g::text), 30) FROM generate_series(1, 100000) g`, ballast)); err != nil {
			t.Fatal(err)
		}
	}

	ends := harness.EndOffsets(t, e, partitions)
	victim := harness.Connect(t, pg.URL)
	var pid int
	if err := victim.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill backend %d: %v", pid, err)
	}
	crashed := time.Now()
	// Whatever happens next, the cleanups need the server back.
	t.Cleanup(func() { pg.WaitAccepting(t, 2*time.Minute) })
	waitLogCount(t, relay, "streaming started", 2, 3*time.Minute)
	resumed := time.Since(crashed)

	committed := run.Wait(t)
	recs := harness.FinishDelivery(t, e, committed, 3*time.Minute)
	if !relay.Running() {
		t.Fatalf("the relay exited: %v", relay.Err)
	}
	starts := relay.StartLSNs(t)
	attempts := relay.LogEntries("replication connection lost; reconnecting")
	inRecovery := 0 // attempts refused because the server was recovering
	for _, m := range attempts {
		if msg, _ := m["error"].(string); strings.Contains(msg, "57P03") {
			inRecovery++
		}
	}
	if inRecovery == 0 {
		t.Errorf("no reconnection attempt met the recovery (SQLSTATE 57P03) among %d: the replay was too short for this test to mean anything", len(attempts))
	}
	relay.Stop(30 * time.Second)

	dups := checkDelivery(t, recs, committed, partitions)
	checkDuplicatesUnconfirmed(t, recs, []killPoint{{confirmed: starts[len(starts)-1], ends: ends}})
	checkNoDuplicates(t, dups, len(recs))
	recovery := regexp.MustCompile(`redo done at [^\n]*`).FindString(pg.Log())
	t.Logf("backend %d killed; relay streaming again %s later after %d reconnection attempts, %d of them refused during recovery (%s); rows committed %d, records %d, duplicates %d, skipped as already in Kafka %d",
		pid, resumed.Round(time.Millisecond), len(attempts), inRecovery, recovery, committed.N, len(recs), dups, dedupeOf(relay).skipped)
}
