//go:build integration

package integration

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestFault_RelayKilledRepeatedly: six writers commit at least 50,000 outbox rows while the
// relay is killed with SIGKILL at random moments — mostly while streaming, sometimes during its
// start-up, and every fourth time in the middle of delivering a transaction of 20,000 rows —
// and restarted each time, all along the run (at least ten kills of a streaming relay). After
// each kill the slot's confirmed position is read once its walsender has gone (it cannot move
// any more), and the next relay must start streaming exactly there. In the end every committed
// row is in Kafka, in commit order per channel, exactly once: what a dead relay had sent but not
// confirmed, the next one finds at its partitions' tails and does not send again.
func TestFault_RelayKilledRepeatedly(t *testing.T) {
	if testing.Short() {
		t.Skip("about 2 minutes; skipped with -short")
	}
	t.Parallel()
	const partitions, minKills, bigRows = 3, 10, 20_000
	e := harness.NewOutbox(t, partitions)
	w := harness.FaultWorkload{Workload: harness.Workload{Writers: 6, Rows: 50_000, Channels: 100, MaxTxnRows: 20}}
	harness.PrepareWorkload(t, e, w.Channels)

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	run := harness.StartWorkload(t, e, w)
	relay := e.StartRelay(t)
	relays := []*harness.Relay{relay}
	var kills []killPoint
	var big []bigTxn
	streamingKills, startupKills, restarts := 0, 0, 0
	// Kills go on for the whole run: at least minKills of a streaming relay, and until the
	// writers have committed their rows.
	for i := 0; streamingKills < minKills || run.Committed() < w.Rows; i++ {
		switch {
		case i%4 == 3:
			// A kill in the middle of a large transaction's delivery: some of its rows are in
			// Kafka, the slot cannot have confirmed it (checkKilledMidTxn verifies both).
			relay.WaitLog("streaming started", time.Minute)
			b := bigTxn{first: int64(len(big)+1) * 1_000_000, rows: bigRows, kill: len(kills)}
			harness.CommitBigTxn(t, e, run.Got, b.first, b.rows)
			big = append(big, b)
			// The relay may lag behind the writers: wait for every row committed before the
			// transaction (at most this count less the transaction) and a third of it.
			harness.WaitTopicEnd(t, e, partitions, int64(run.Committed()-bigRows*2/3), 3*time.Minute)
		case rng.IntN(5) == 0:
			// A kill during start-up: preflight, slot checks, START_REPLICATION.
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		default:
			relay.WaitLog("streaming started", time.Minute)
			time.Sleep(time.Duration(200+rng.IntN(2500)) * time.Millisecond)
		}
		relay.Kill()
		starts := relay.StartLSNs(t)
		if len(starts) > 0 {
			streamingKills++
			if len(kills) > 0 && starts[0] != kills[len(kills)-1].confirmed {
				t.Errorf("relay %d started streaming at %s, but the slot had confirmed %s when its predecessor died",
					restarts, starts[0], kills[len(kills)-1].confirmed)
			}
		} else {
			startupKills++
		}
		harness.WaitSlotInactive(t, e.DatabaseURL, e.Name, 30*time.Second)
		kills = append(kills, killPoint{confirmed: harness.SlotConfirmed(t, e.DatabaseURL, e.Name), ends: harness.EndOffsets(t, e, partitions)})
		t.Logf("kill %d (%s): %d rows committed, slot confirmed %s, %d records in Kafka",
			len(kills), map[bool]string{true: "streaming", false: "start-up"}[len(starts) > 0],
			run.Committed(), kills[len(kills)-1].confirmed, harness.TopicEnd(t, e, partitions))
		relay = e.StartRelay(t)
		relays = append(relays, relay)
		restarts++
	}
	committed := run.Wait(t)
	relay.WaitLog("streaming started", time.Minute)
	if starts := relay.StartLSNs(t); starts[0] != kills[len(kills)-1].confirmed {
		t.Errorf("last relay started streaming at %s, but the slot had confirmed %s", starts[0], kills[len(kills)-1].confirmed)
	}
	recs := harness.FinishDelivery(t, e, committed, 5*time.Minute)
	relay.Stop(30 * time.Second)

	dups := checkDelivery(t, recs, committed, partitions)
	checkDuplicatesUnconfirmed(t, recs, kills)
	checkNoDuplicates(t, dups, len(recs))
	midTxn := checkKilledMidTxn(t, recs, big, kills)
	if committed.N < w.Rows {
		t.Errorf("only %d rows committed, want at least %d", committed.N, w.Rows)
	}
	d := dedupeOf(relays...)
	if d.warnings() > 0 {
		t.Errorf("the relays did not trust their own partitions' tails: %v", d.distrusted)
	}
	t.Logf("SIGKILLs %d (%d while streaming, %d during start-up, %d of them mid-way through a %d-row transaction, with %v of its rows in Kafka); rows committed %d over %d channels; records in Kafka %d; duplicates %d; skipped as already in Kafka %d (confirmed at kills: %s)",
		len(kills), streamingKills, startupKills, len(big), bigRows, midTxn, committed.N, len(committed.Rows), len(recs), dups, d.skipped, confirmedList(kills))
}

// TestFault_TwoInstances: a second relay on the same slot stands by while the first streams —
// its log says so, and it streams nothing — and takes over within seconds when the first is
// killed, starting at the slot's confirmed position; nothing committed is lost, nothing is sent
// twice.
//
// The standby retries with the reconnection backoff, so its takeover time is bounded by
// --reconnect-max (plus up to half of it in jitter): a standby meant to take over quickly runs
// with a small one, 2s here.
func TestFault_TwoInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("about a minute; skipped with -short")
	}
	t.Parallel()
	const partitions = 3
	const reconnectMax = 2 * time.Second
	e := harness.NewOutbox(t, partitions)
	w := harness.FaultWorkload{Workload: harness.Workload{Writers: 4, Rows: 20_000, Channels: 50, MaxTxnRows: 10}}
	harness.PrepareWorkload(t, e, w.Channels)

	run := harness.StartWorkload(t, e, w)
	first := e.StartRelay(t, "PGOUTBOX_RECONNECT_MAX="+reconnectMax.String())
	first.WaitLog("streaming started", time.Minute)
	second := e.StartRelay(t, "PGOUTBOX_RECONNECT_MAX="+reconnectMax.String())
	second.WaitLog("standing by", time.Minute)
	// Long enough for several retries, with the backoff at its cap.
	time.Sleep(12 * time.Second)
	standbys := len(second.LogEntries("standing by"))
	if standbys < 3 {
		t.Errorf("the standby logged %d standing-by lines in 12s, want several retries", standbys)
	}
	if contains(second.Log.String(), "streaming started") {
		t.Fatalf("the second relay streams while the first one holds the slot")
	}
	if !first.Running() {
		t.Fatalf("the first relay exited: %v", first.Err)
	}
	streamedFirst := harness.TopicEnd(t, e, partitions)

	// End offsets before the kill: what comes after them was sent by the second relay, or by
	// the first one in its last moments — only repeats are checked, against where the second
	// relay started.
	ends := harness.EndOffsets(t, e, partitions)
	first.Kill()
	killed := time.Now()
	second.WaitLog("streaming started", 30*time.Second)
	takeover := time.Since(killed)
	start := second.StartLSNs(t)[0]
	if bound := reconnectMax*3/2 + 5*time.Second; takeover > bound {
		t.Errorf("the standby took over %s after the kill; want within %s (backoff cap %s + jitter + a session start)", takeover, bound, reconnectMax)
	}

	committed := run.Wait(t)
	recs := harness.FinishDelivery(t, e, committed, 3*time.Minute)
	second.Stop(30 * time.Second)
	dups := checkDelivery(t, recs, committed, partitions)
	checkDuplicatesUnconfirmed(t, recs, []killPoint{{confirmed: start, ends: ends}})
	checkNoDuplicates(t, dups, len(recs))
	t.Logf("standby retried %d times while the first relay streamed %d records; took over %s after SIGKILL at %s; rows committed %d, records %d, duplicates %d, skipped as already in Kafka %d",
		standbys, streamedFirst, takeover.Round(time.Millisecond), start, committed.N, len(recs), dups, dedupeOf(second).skipped)
}
