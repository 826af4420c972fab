//go:build integration

package integration

import (
	"strings"
	"testing"
	"time"
)

// TestStartupChecks: an unbounded max_slot_wal_keep_size gives a loud warning that says what to
// set; wal_level below logical stops `setup` and `run` at once with the fix.
func TestStartupChecks(t *testing.T) {
	t.Parallel()
	testStartupChecks(t, pgTarget{})
}

func testStartupChecks(t *testing.T, target pgTarget) {
	pg := target.private(t)
	pg.setConf(t, "max_slot_wal_keep_size", "-1")
	e := newOutboxOn(t, services{DatabaseURL: pg.URL, Brokers: needKafka(t)}, 1)

	relay := e.startRelay(t)
	relay.waitLog("streaming started", 30*time.Second)
	relay.stop(30 * time.Second)
	if log := relay.log.String(); !strings.Contains(log, "max_slot_wal_keep_size is -1 (unbounded)") || !strings.Contains(log, "ALTER SYSTEM SET max_slot_wal_keep_size") {
		t.Errorf("no warning about the unbounded max_slot_wal_keep_size:\n%s", relay.log.tail(10))
	}

	// PostgreSQL refuses to start with wal_level=replica while a logical slot exists.
	execSQL(t, pg.URL, "SELECT pg_drop_replication_slot('"+e.Name+"')")
	pg.setConf(t, "wal_level", "replica")
	const want = "wal_level is replica; set wal_level=logical and restart PostgreSQL"
	if out, err := e.pgoutbox(t, "setup"); err == nil || !strings.Contains(out, want) {
		t.Errorf("setup with wal_level=replica: err %v, output:\n%s", err, out)
	}
	relay = e.startRelay(t)
	if code := relay.waitExit(time.Minute); code == 0 || !strings.Contains(relay.log.String(), want) {
		t.Errorf("run with wal_level=replica: exit %d, log:\n%s", code, relay.log.tail(3))
	}
}
