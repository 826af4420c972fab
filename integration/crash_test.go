//go:build integration

package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/jackc/pglogrepl"
	"github.com/pgoutbox/pgoutbox/capture"
)

// killPoint is what the test saw right after a SIGKILL: the slot's confirmed position (the
// dead relay can no longer move it) and each partition's end offset (the records before it
// were sent by the relay that died).
type killPoint struct {
	confirmed pglogrepl.LSN
	ends      map[int]int64
}

// TestRelay_CrashMidStream kills the relay with SIGKILL three times while writers commit,
// restarting it each time: no committed row is missing, and none is in Kafka twice — each new
// relay finds at its partitions' tails what its predecessor had sent without confirming it.
func TestRelay_CrashMidStream(t *testing.T) {
	t.Parallel()
	testCrashMidStream(t, pgTarget{})
}

func testCrashMidStream(t *testing.T, pg pgTarget) {
	const partitions = 3
	e := harness.NewOutboxOn(t, pg.services(t), partitions)
	w := harness.Workload{Writers: 4, Rows: 20_000, Channels: 50, MaxTxnRows: 10}
	harness.PrepareWorkload(t, e, w.Channels)

	done := make(chan *harness.CommittedRows)
	go func() { done <- harness.RunWorkload(t, e, w) }()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var kills []killPoint
	relay := e.StartRelay(t)
	relays := []*harness.Relay{relay}
	relay.WaitLog("streaming started", 30*time.Second)
	for range 3 {
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
		relay.Kill()
		harness.WaitSlotInactive(t, e.DatabaseURL, e.Name, 30*time.Second)
		kills = append(kills, killPoint{confirmed: harness.SlotConfirmed(t, e.DatabaseURL, e.Name), ends: harness.EndOffsets(t, e, partitions)})
		relay = e.StartRelay(t)
		relays = append(relays, relay)
		relay.WaitLog("streaming started", 30*time.Second)
	}
	committed := <-done
	harness.WaitConfirmedPast(t, e, harness.CurrentWAL(t, e.DatabaseURL), 2*time.Minute)
	recs := harness.WaitRecords(t, e.Brokers, e.Name, committed.N, time.Minute)
	relay.Stop(30 * time.Second)

	dups := checkDelivery(t, recs, committed, partitions)
	checkDuplicatesUnconfirmed(t, recs, kills)
	checkNoDuplicates(t, dups, len(recs))
	d := dedupeOf(relays...)
	if d.warnings() > 0 {
		t.Errorf("the relays did not trust their own partitions' tails: %v", d.distrusted)
	}
	t.Logf("rows committed %d, records in Kafka %d, duplicates %d, skipped as already in Kafka %d after %d kills (confirmed at kills: %v)",
		committed.N, len(recs), dups, d.skipped, len(kills), confirmedList(kills))
}

// checkDuplicatesUnconfirmed verifies that each repeated record was sent again only because its
// transaction was not confirmed when the relay that first sent it was killed.
func checkDuplicatesUnconfirmed(t *testing.T, recs []harness.Record, kills []killPoint) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range recs {
		pos := r.Headers["pgoutbox-position"]
		if !seen[pos] {
			seen[pos] = true
			continue
		}
		// The generation that sent this copy: after the last kill whose end offset it passes.
		gen := -1
		for k, kp := range kills {
			if r.Offset >= kp.ends[r.Partition] {
				gen = k
			}
		}
		if gen < 0 {
			t.Errorf("record %d/%d repeats position %s within the first relay's output", r.Partition, r.Offset, pos)
			continue
		}
		lsn, err := pglogrepl.ParseLSN(r.Headers["pgoutbox-commit-lsn"])
		if err != nil {
			t.Fatalf("record %d/%d: %v", r.Partition, r.Offset, err)
		}
		if lsn < kills[gen].confirmed {
			t.Errorf("record %d/%d (commit %s) was sent again although the slot had confirmed %s before the restart",
				r.Partition, r.Offset, lsn, kills[gen].confirmed)
		}
	}
}

func confirmedList(kills []killPoint) string {
	var s []string
	for _, k := range kills {
		s = append(s, k.confirmed.String())
	}
	return strings.Join(s, ",")
}

// TestRelay_IdleProgress: with only non-outbox traffic, the slot's confirmed position follows
// the server (keepalives), so other tables' writes do not pin WAL.
func TestRelay_IdleProgress(t *testing.T) {
	t.Parallel()
	testIdleProgress(t, pgTarget{})
}

func testIdleProgress(t *testing.T, pg pgTarget) {
	e := harness.NewOutboxOn(t, pg.services(t), 1)
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`CREATE TABLE %s_other (id bigserial PRIMARY KEY, v text)`, e.Name))
	t.Cleanup(func() { harness.ExecInCleanup(t, e.DatabaseURL, fmt.Sprintf(`DROP TABLE IF EXISTS %s_other`, e.Name)) })

	relay := e.StartRelay(t)
	relay.WaitLog("streaming started", 30*time.Second)
	before := harness.SlotConfirmed(t, e.DatabaseURL, e.Name)
	for range 20 { // about 8 MB of WAL in 20 transactions, none touching the outbox
		harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s_other (v) SELECT repeat('x', 300) FROM generate_series(1, 1000)`, e.Name))
	}
	end := harness.MustLSN(t, harness.CurrentWAL(t, e.DatabaseURL))
	if written := end - before; written < 4<<20 {
		t.Fatalf("only %d bytes of WAL written; the test needs more than the 1 MiB bound to mean anything", written)
	}

	const bound = 1 << 20
	lag := waitLagBelow(t, e, bound, 20*time.Second)
	relay.Stop(30 * time.Second)
	t.Logf("WAL written %d bytes without outbox rows; slot lag afterwards %d bytes (bound %d)", end-before, lag, bound)
}

// TestRelay_IdleOnBusyCluster: our database is idle while ANOTHER database of the same server
// writes heavily. The walsender's keepalives still carry the server's WAL end, and confirming
// them (nothing in flight) keeps our slot from pinning the other database's WAL — no heartbeat
// needed. This is the case that fills disks when a relay confirms only its own commits.
func TestRelay_IdleOnBusyCluster(t *testing.T) {
	t.Parallel()
	e := harness.NewOutbox(t, 1)
	other := strings.Replace(e.DatabaseURL, "/pgoutbox?", "/pgoutbox_other?", 1)
	if other == e.DatabaseURL {
		other = strings.TrimSuffix(e.DatabaseURL, "/pgoutbox") + "/pgoutbox_other"
	}
	if other == e.DatabaseURL {
		t.Fatalf("cannot derive the second database's URL from %s", capture.RedactURL(e.DatabaseURL))
	}
	table := e.Name + "_busy"
	harness.ExecSQL(t, other, fmt.Sprintf(`CREATE TABLE %s (id bigserial PRIMARY KEY, v text)`, table))
	t.Cleanup(func() { harness.ExecInCleanup(t, other, fmt.Sprintf(`DROP TABLE IF EXISTS %s`, table)) })

	relay := e.StartRelay(t)
	relay.WaitLog("streaming started", 30*time.Second)
	before := harness.MustLSN(t, harness.CurrentWAL(t, e.DatabaseURL))
	for range 20 { // about 6 MB of WAL in the other database
		harness.ExecSQL(t, other, fmt.Sprintf(`INSERT INTO %s (v) SELECT repeat('y', 300) FROM generate_series(1, 1000)`, table))
	}
	end := harness.MustLSN(t, harness.CurrentWAL(t, e.DatabaseURL))
	if end-before < 4<<20 {
		t.Fatalf("only %d bytes of WAL written", end-before)
	}
	const bound = 1 << 20
	lag := waitLagBelow(t, e, bound, 20*time.Second)
	relay.Stop(30 * time.Second)
	t.Logf("WAL written in another database %d bytes; our slot's lag afterwards %d bytes (bound %d)", end-before, lag, bound)
}

// waitLagBelow waits until the slot's unconfirmed bytes are below bound and returns them.
func waitLagBelow(t *testing.T, e harness.Outbox, bound int64, timeout time.Duration) int64 {
	t.Helper()
	conn := harness.Connect(t, e.DatabaseURL)
	var lag int64
	err := harness.Eventually(context.Background(), timeout, 200*time.Millisecond, func(ctx context.Context) error {
		err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn() - confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1`, e.Name).Scan(&lag)
		switch {
		case err != nil && ctx.Err() == nil:
			return harness.Stop(err)
		case err != nil:
			return err
		case lag >= bound:
			return fmt.Errorf("slot lag %d bytes after the last write; want < %d", lag, bound)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lag
}
