//go:build integration

package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestStartupChecks: an unbounded max_slot_wal_keep_size gives a loud warning that says what to
// set; on PostgreSQL 18+ so does a non-zero idle_replication_slot_timeout; wal_level below
// logical stops `setup` and `run` at once with the fix.
func TestStartupChecks(t *testing.T) {
	t.Parallel()
	testStartupChecks(t, pgTarget{})
}

func testStartupChecks(t *testing.T, target pgTarget) {
	pg := target.private(t)
	pg.SetConf(t, "max_slot_wal_keep_size", "-1")
	major, err := strconv.Atoi(pg.Version)
	if err != nil {
		t.Fatal(err)
	}
	idleTimeout := major >= 18 // idle_replication_slot_timeout is new in PostgreSQL 18
	if idleTimeout {
		pg.SetConf(t, "idle_replication_slot_timeout", "1h")
	}
	e := harness.NewOutboxOn(t, harness.Services{DatabaseURL: pg.URL, Brokers: harness.NeedKafka(t)}, 1)

	relay := e.StartRelay(t)
	relay.WaitLog("streaming started", 30*time.Second)
	relay.Stop(30 * time.Second)
	log := relay.Log.String()
	if !strings.Contains(log, "max_slot_wal_keep_size is -1 (unbounded)") || !strings.Contains(log, "ALTER SYSTEM SET max_slot_wal_keep_size") {
		t.Errorf("no warning about the unbounded max_slot_wal_keep_size:\n%s", relay.Log.Tail(10))
	}
	const idleWarning = "idle_replication_slot_timeout is 1h0m0s: PostgreSQL invalidates the slot"
	if got := strings.Contains(log, idleWarning); got != idleTimeout {
		t.Errorf("PostgreSQL %s with idle_replication_slot_timeout set: %v; warning %q logged: %v\n%s",
			pg.Version, idleTimeout, idleWarning, got, relay.Log.Tail(10))
	}

	// PostgreSQL refuses to start with wal_level=replica while a logical slot exists.
	harness.ExecSQL(t, pg.URL, "SELECT pg_drop_replication_slot('"+e.Name+"')")
	pg.SetConf(t, "wal_level", "replica")
	const want = "wal_level is replica; set wal_level=logical and restart PostgreSQL"
	if out, err := e.Pgoutbox(t, "setup"); err == nil || !strings.Contains(out, want) {
		t.Errorf("setup with wal_level=replica: err %v, output:\n%s", err, out)
	}
	relay = e.StartRelay(t)
	if code := relay.WaitExit(time.Minute); code == 0 || !strings.Contains(relay.Log.String(), want) {
		t.Errorf("run with wal_level=replica: exit %d, log:\n%s", code, relay.Log.Tail(3))
	}
}
