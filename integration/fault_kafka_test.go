//go:build integration

package integration

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/jackc/pglogrepl"
)

// TestFault_KafkaRestart: the relay's (private) broker is stopped and started again while
// writers commit rows and the relay streams. The relay rides it out in the same process and the
// same replication session — it retries, and is not restarted — and every committed row arrives,
// in order, exactly once: a request whose answer was lost is followed by a read of the
// partition's tail, and only what is missing is sent again.
func TestFault_KafkaRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("about a minute; skipped with -short")
	}
	t.Parallel()
	const partitions = 3
	kafka := harness.StartPrivateKafka(t)
	e := harness.NewOutboxOn(t, harness.Services{DatabaseURL: harness.NeedPostgres(t), Brokers: kafka.Brokers}, partitions)
	w := harness.FaultWorkload{Workload: harness.Workload{Writers: 4, Rows: 20_000, Channels: 50, MaxTxnRows: 10}}
	harness.PrepareWorkload(t, e, w.Channels)

	relay := e.StartRelay(t)
	relay.WaitLog("streaming started", time.Minute)
	run := harness.StartWorkload(t, e, w)
	harness.WaitTopicEnd(t, e, partitions, 2_000, time.Minute) // mid-stream

	before := killPoint{confirmed: harness.SlotConfirmed(t, e.DatabaseURL, e.Name), ends: harness.EndOffsets(t, e, partitions)}
	kafka.Stop()
	down := time.Now()
	time.Sleep(5 * time.Second) // rows keep being committed while the broker is away
	kafka.Start()
	outage := time.Since(down)
	committedAtRestart := run.Committed()

	committed := run.Wait(t)
	recs := harness.FinishDelivery(t, e, committed, 3*time.Minute)
	if !relay.Running() {
		t.Fatalf("the relay exited: %v", relay.Err)
	}
	sessions := len(relay.LogEntries("streaming started"))
	if sessions != 1 {
		t.Errorf("the relay started %d replication sessions; a Kafka outage must not end the session", sessions)
	}
	retries := len(relay.LogEntries("kafka write")) + len(relay.LogEntries("read topic metadata"))
	if !strings.Contains(relay.Log.String(), "failed; retrying until it succeeds") {
		t.Errorf("the relay never logged a failed Kafka request: did the broker really go away?")
	}
	relay.Stop(30 * time.Second)

	dups := checkDelivery(t, recs, committed, partitions)
	checkDuplicatesUnconfirmed(t, recs, []killPoint{before})
	checkNoDuplicates(t, dups, len(recs))
	t.Logf("broker down and back in %s (rows committed by then %d); relay retry log lines %d; rows committed %d, records %d, duplicates %d, skipped as already in Kafka %d",
		outage.Round(time.Millisecond), committedAtRestart, retries, committed.N, len(recs), dups, dedupeOf(relay).skipped)
}

// TestFault_LongKafkaOutage: Kafka is down for more than two minutes while rows keep being
// committed, on a private PostgreSQL whose wal_sender_timeout is 10s (the outage lasts twelve
// of them). Proven:
//   - the replication connection survives: the relay never reconnects (one session, the same
//     walsender pid throughout) and the server's log has no replication timeout for it — while
//     a control connection that stops answering IS timed out in the same log, so the check
//     is not vacuous;
//   - the relay reads only its window: the in-flight gauges stay within the limits, the newest
//     received position stops moving while the slot's unconfirmed WAL grows by the backlog, and
//     the resident memory (VmRSS, sampled every 500ms) stays within bounds far below the
//     backlog's size — near the streaming baseline, and flat once the window has filled — as
//     do the Go heap in use and the number of goroutines;
//   - once the broker is back, every row arrives, in order.
func TestFault_LongKafkaOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("about 4 minutes; skipped with -short")
	}
	t.Parallel()
	const (
		partitions    = 2
		outage        = 2*time.Minute + 5*time.Second
		senderTimeout = 10 * time.Second
		maxEvents     = 1000
		maxBytes      = 1 << 20
		// The window fills within a second or two of the broker going away; the retry loops
		// are in their steady state well before this.
		settle = 20 * time.Second
		// Bounds on the relay's resident memory (this is the race-built binary: its shadow
		// memory multiplies whatever the Go heap holds, and is not given back quickly):
		//   - over the streaming baseline, at any time of the outage: the window (1 MiB) and
		//     the Kafka requests built from it, the garbage of the retry loops, the heap's
		//     growth target (GOGC=100), times the race detector's overhead;
		//   - after the settling time, over what it was then: nothing that grows with the
		//     outage. The slack is for the garbage collector's timing.
		// The backlog written meanwhile is required to be four times each bound, so a relay
		// that read it could not stay under them. Measured on this 2-core machine: baseline
		// ~58 MiB, peak ~78 MiB, a creep of ~8 MiB after the settling time that levels off
		// (while the Go heap stays at 6-9 MiB: it is the race runtime's, not the relay's).
		rssGrowthBound = 32 << 20
		rssLateBound   = 16 << 20
		// The Go heap in use (from the relay's own go_memstats metrics: no shadow memory, no
		// pages the runtime has not returned yet): the window and what is built from it, with
		// the growth target. Streaming normally it is under 10 MiB.
		heapBound = 24 << 20
		// The backlog must be four times the RSS bound; the writers slow down when the
		// machine is busy, so the outage goes on until it is, up to maxOutage.
		minBacklog = 4*rssGrowthBound + 16<<20
		maxOutage  = 6 * time.Minute
	)
	pg := harness.StartPrivatePostgres(t)
	pg.SetConf(t, "wal_sender_timeout", senderTimeout.String())
	kafka := harness.StartPrivateKafka(t)
	e := harness.NewOutboxOn(t, harness.Services{DatabaseURL: pg.URL, Brokers: kafka.Brokers}, partitions)
	// Rows of ~2.6 kB (2.5 kB of random text, which does not compress), a few hundred a second:
	// 1-2 MB of outbox rows a second. The outage lasts until the backlog is large enough for the
	// memory bounds to mean something (minBacklog), at least two minutes.
	w := harness.FaultWorkload{Workload: harness.Workload{Writers: 3, Rows: 3_000, Channels: 50, MaxTxnRows: 20}, Pad: 2500, Pause: 20 * time.Millisecond}
	harness.PrepareWorkload(t, e, w.Channels)

	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	relay := e.StartRelay(t, "PGOUTBOX_HTTP_ADDR="+addr,
		fmt.Sprintf("PGOUTBOX_MAX_INFLIGHT_EVENTS=%d", maxEvents), fmt.Sprintf("PGOUTBOX_MAX_INFLIGHT_BYTES=%d", maxBytes),
		"PGOUTBOX_KAFKA_BACKOFF_MAX=2s")
	relay.WaitLog("streaming started", time.Minute)
	walsender := harness.SlotActivePID(t, pg.URL, e.Name)
	run := harness.StartWorkload(t, e, w)

	// Baseline: the relay's memory while it streams the same traffic with Kafka up.
	harness.WaitTopicEnd(t, e, partitions, 2_000, time.Minute)
	base := harness.SampleRSS(relay.Pid(), 250*time.Millisecond)
	time.Sleep(10 * time.Second)
	baseline := harness.PeakRSS(base.Stop(), 0, time.Hour)

	before := killPoint{confirmed: harness.SlotConfirmed(t, pg.URL, e.Name), ends: harness.EndOffsets(t, e, partitions)}
	kafka.Stop()
	down := time.Now()
	rss := harness.SampleRSS(relay.Pid(), 500*time.Millisecond)
	control := silentWalsender(t, pg.URL, e.Name)
	var maxInflight, maxInflightBytes, recvSettled float64
	var lagSettled int64
	var goTrace []string // the Go runtime's own figures: goroutines and heap in use
	var maxHeap, goroutinesSettled, goroutinesLate float64
	for time.Since(down) < outage || (harness.SlotLag(t, pg.URL, e.Name) < minBacklog && time.Since(down) < maxOutage) {
		time.Sleep(2 * time.Second)
		if !relay.Running() {
			t.Fatalf("the relay exited during the outage: %v", relay.Err)
		}
		m := harness.Scrape(t, addr)
		maxInflight = max(maxInflight, m["pgoutbox_inflight_events"])
		maxInflightBytes = max(maxInflightBytes, m["pgoutbox_inflight_bytes"])
		if recvSettled == 0 && time.Since(down) > settle {
			recvSettled, lagSettled = m["pgoutbox_received_lsn"], harness.SlotLag(t, pg.URL, e.Name)
		}
		heap := m["go_memstats_heap_inuse_bytes"]
		maxHeap = max(maxHeap, heap)
		if time.Since(down) < settle {
			goroutinesSettled = max(goroutinesSettled, m["go_goroutines"])
		} else {
			goroutinesLate = max(goroutinesLate, m["go_goroutines"])
		}
		if len(goTrace) < int(time.Since(down)/(10*time.Second)) {
			goTrace = append(goTrace, fmt.Sprintf("%s:%.0f/%.1f", time.Since(down).Round(time.Second), m["go_goroutines"], heap/(1<<20)))
		}
	}
	recvLate := harness.Scrape(t, addr)["pgoutbox_received_lsn"]
	lagLate := harness.SlotLag(t, pg.URL, e.Name)
	series := rss.Stop()
	stillStreaming := harness.SlotActivePID(t, pg.URL, e.Name)
	kafka.Start()
	outageLen := time.Since(down)

	committed := run.Wait(t)
	recs := harness.FinishDelivery(t, e, committed, 5*time.Minute)
	if !relay.Running() {
		t.Fatalf("the relay exited: %v", relay.Err)
	}
	if n := len(relay.LogEntries("replication connection lost")); n > 0 {
		t.Errorf("the relay reconnected %d times during the outage: the replication connection was lost", n)
	}
	if n := len(relay.LogEntries("streaming started")); n != 1 {
		t.Errorf("the relay started %d replication sessions, want 1", n)
	}
	if stillStreaming != walsender {
		t.Errorf("the slot's walsender was pid %d before the outage and %d at its end: the connection did not survive", walsender, stillStreaming)
	}
	timeouts := walsenderTimeouts(pg.Log())
	if timeouts[walsender] {
		t.Errorf("PostgreSQL timed out the relay's walsender (pid %d): the relay stopped answering during the outage", walsender)
	}
	if !timeouts[control] {
		t.Errorf("the control connection that stopped answering (walsender pid %d) was not timed out: is wal_sender_timeout %s in effect, and does the log show timeouts? timeouts seen: %v",
			control, senderTimeout, timeouts)
	}
	if maxInflight > maxEvents || maxInflightBytes > maxBytes {
		t.Errorf("in flight during the outage: %.0f rows, %.0f bytes; the window is %d rows, %d bytes", maxInflight, maxInflightBytes, maxEvents, maxBytes)
	}
	backlog, lateBacklog := lagLate, lagLate-lagSettled
	if backlog < 4*rssGrowthBound || lateBacklog < 4*rssLateBound {
		t.Errorf("the slot's unconfirmed WAL reached only %s (%s after the first %s); the test needs %s (%s) to tell a bounded relay from one that reads the backlog",
			harness.MiB(backlog), harness.MiB(lateBacklog), settle, harness.MiB(4*rssGrowthBound), harness.MiB(4*rssLateBound))
	}
	if read := int64(recvLate - recvSettled); read > maxBytes {
		t.Errorf("the relay received %s of WAL during the outage (after its window filled) while the slot fell %s behind: it must stop reading when the window is full",
			harness.MiB(read), harness.MiB(lateBacklog))
	}
	peak, early, late := harness.PeakRSS(series, 0, time.Hour), harness.PeakRSS(series, 0, settle), harness.PeakRSS(series, settle, time.Hour)
	if peak-baseline > rssGrowthBound {
		t.Errorf("VmRSS peaked at %s during the outage, %s over the %s streaming baseline; want at most %s over it (the window is %s)",
			harness.MiB(peak), harness.MiB(peak-baseline), harness.MiB(baseline), harness.MiB(rssGrowthBound), harness.MiB(maxBytes))
	}
	if late-early > rssLateBound {
		t.Errorf("VmRSS grew from %s (first %s of the outage) to %s while the backlog grew by %s; want at most %s of growth: %s",
			harness.MiB(early), settle, harness.MiB(late), harness.MiB(lateBacklog), harness.MiB(rssLateBound), harness.RSSTrace(series, 10*time.Second))
	}
	if maxHeap > heapBound {
		t.Errorf("the relay's Go heap in use reached %s during the outage; want at most %s (window %s)", harness.MiB(int64(maxHeap)), harness.MiB(heapBound), harness.MiB(maxBytes))
	}
	if goroutinesLate > goroutinesSettled+8 {
		t.Errorf("the relay's goroutines went from %.0f (first %s of the outage) to %.0f: something leaks per retry (%s)",
			goroutinesSettled, settle, goroutinesLate, strings.Join(goTrace, " "))
	}
	relay.Stop(30 * time.Second)

	dups := checkDelivery(t, recs, committed, partitions)
	checkDuplicatesUnconfirmed(t, recs, []killPoint{before})
	checkNoDuplicates(t, dups, len(recs))
	t.Logf("outage %s (wal_sender_timeout %s); slot unconfirmed WAL %s after %s, %s at the end; relay received %d bytes after %s; in flight at most %.0f rows / %.0f bytes; VmRSS streaming baseline %s, outage peak %s (first %s %s, later %s; %d samples: %s); goroutines/heap MiB: %s; rows committed %d, records %d, duplicates %d",
		outageLen.Round(time.Second), senderTimeout, harness.MiB(lagSettled), settle, harness.MiB(lagLate), int64(recvLate-recvSettled), settle, maxInflight, maxInflightBytes,
		harness.MiB(baseline), harness.MiB(peak), settle, harness.MiB(early), harness.MiB(late), len(series), harness.RSSTrace(series, 10*time.Second), strings.Join(goTrace, " "), committed.N, len(recs), dups)
}

// silentWalsender opens a replication connection that streams the outbox's publication from a
// temporary slot and then never reads nor answers: the server must time it out after
// wal_sender_timeout. It returns its walsender's pid. The slot goes with the connection.
func silentWalsender(t *testing.T, url, publication string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := harness.ReplicationConn(t, url)
	slot := harness.UniqueName(t) + "_silent"
	if _, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Temporary: true, Mode: pglogrepl.LogicalReplication}); err != nil {
		t.Fatalf("create the control's temporary slot: %v", err)
	}
	if err := pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + publication + "'"},
	}); err != nil {
		t.Fatalf("start the control's replication: %v", err)
	}
	return int(conn.PID())
}

var walsenderTimeoutLine = regexp.MustCompile(`\[(\d+)\][^\n]*terminating walsender process due to replication timeout`)

// walsenderTimeouts returns the pids of the walsenders the server's log says it timed out.
func walsenderTimeouts(log string) map[int]bool {
	out := map[int]bool{}
	for _, m := range walsenderTimeoutLine.FindAllStringSubmatch(log, -1) {
		var pid int
		_, _ = fmt.Sscan(m[1], &pid)
		out[pid] = true
	}
	return out
}
