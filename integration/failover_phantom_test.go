//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/jackc/pgx/v5"
)

// Batches of TestFailover_WithoutSynchronizedStandbySlots, in payload.Writer.
const (
	batchBefore   = 1 // committed while the standby streams: on both servers
	batchLagging  = 2 // committed while the standby is down, synchronous_commit = local
	batchWaiting  = 3 // one transaction whose COMMIT waits for the (down) synchronous standby
	batchPromoted = 4 // committed on the promoted standby
)

// TestFailover_WithoutSynchronizedStandbySlots shows what synchronized_standby_slots prevents.
// A PostgreSQL 17 primary with a synchronous standby (synchronous_standby_names) and a failover
// slot synchronized to it; the standby goes down, and the primary goes on committing: batch 2
// with synchronous_commit = local (asynchronous replication), and one transaction (batch 3)
// with the default synchronous_commit = on, whose COMMIT waits for the standby.
//
//  1. With synchronized_standby_slots: the relay's walsender waits (wait event
//     WaitForStandbyConfirmation), the relay receives nothing of batches 2 and 3, and the slot
//     is not confirmed past them.
//  2. Without it (reset, reloaded): the walsender sends what is flushed locally; the relay
//     publishes batches 2 and 3 (also the transaction whose COMMIT never returned) and confirms
//     them on the primary. The standby never received them.
//  3. The primary is killed, the standby started and promoted: its synchronized slot is behind
//     what the relay confirmed on the old primary, its table lacks batches 2 and 3 — those
//     events are in Kafka all the same ("phantom" events) — and its new timeline reuses their
//     positions, outbox ids and per-channel counters for other rows (batch 4).
//
// The relay's exactly-once guard distrusts the phantom tails (written on timeline 1 after the
// fork), so no row of the promoted database is skipped; the phantoms themselves cannot be
// taken back.
func TestFailover_WithoutSynchronizedStandbySlots(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const standbySlot = "it_phantom_standby"
	primary, standby, _, e := startFailoverPair(t, standbySlot)
	// The outbox's cleanups run after this one: while the primary waits for a standby that is
	// down, their DROPs would wait for it too (a test that fails half-way).
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", primary.SocketDir(), primary.Port)
		if c, err := pgx.Connect(ctx, dsn); err == nil {
			_, _ = c.Exec(ctx, `ALTER SYSTEM RESET synchronous_standby_names`)
			_, _ = c.Exec(ctx, `SELECT pg_reload_conf()`)
			_ = c.Close(ctx)
		}
	})
	relay := e.StartRelay(t, "PGOUTBOX_RECONNECT_MAX=1s")
	relay.WaitLog("streaming started", time.Minute)

	// Batch 1 reaches Kafka, and the standby's synchronized slot follows the relay past it.
	nBefore := writeBatch(t, primary.URL, e.Name, batchBefore, 150, failoverChannels, "on")
	harness.WaitRecords(t, e.Brokers, e.Name, nBefore, 2*time.Minute)
	endBefore := harness.MustLSN(t, harness.CurrentWAL(t, primary.URL))
	harness.WaitConfirmedPast(t, harness.Outbox{Services: harness.Services{DatabaseURL: primary.URL}, Name: e.Name}, endBefore.String(), time.Minute)
	waitSyncedPast(t, standby, e.Name, harness.SlotConfirmed(t, primary.URL, e.Name), time.Minute)

	// The standby goes down; the primary commits batches 2 and 3 without it.
	standby.Stop()
	// The walsender cannot send past what the standby received, which is before this position.
	beforeLagging := harness.MustLSN(t, harness.CurrentWAL(t, primary.URL))
	nLagging := writeBatch(t, primary.URL, e.Name, batchLagging, 300, failoverChannels, "local")
	waiting := startWaitingCommit(t, primary, e.Name, failoverChannels)
	afterLagging := harness.MustLSN(t, harness.CurrentWAL(t, primary.URL))

	// 1. With synchronized_standby_slots, the walsender holds everything back.
	waitWalsenderEvent(t, primary, e.Name, "WaitForStandbyConfirmation", time.Minute)
	time.Sleep(3 * time.Second)
	recs, err := harness.ReadTopic(ctx, e.Brokers, e.Name)
	if err != nil {
		t.Fatal(err)
	}
	if held := countBatches(t, recs); held[batchLagging]+held[batchWaiting] != 0 || held[batchBefore] < nBefore {
		t.Fatalf("with synchronized_standby_slots and the standby down, Kafka holds %v records by batch; want batch 1's %d and none of batches 2 and 3", held, nBefore)
	}
	if c := harness.SlotConfirmed(t, primary.URL, e.Name); c > beforeLagging {
		t.Fatalf("with synchronized_standby_slots and the standby down, the slot was confirmed to %s, past %s where batch 2 starts", c, beforeLagging)
	}
	if !strings.Contains(primary.Log(), `specified in parameter "synchronized_standby_slots" does not have active_pid`) {
		t.Errorf("the primary did not warn that the standby's slot is inactive; its log:\n%s", primary.Log())
	}
	t.Logf("with synchronized_standby_slots: walsender in WaitForStandbyConfirmation, 0 of %d rows of batches 2 and 3 in Kafka after 3 s, slot confirmed at %s (batch 2 starts after %s, batch 3 ends before %s)",
		nLagging+waiting.rows, harness.SlotConfirmed(t, primary.URL, e.Name), beforeLagging, afterLagging)

	// 2. Without it, the relay publishes and confirms what the standby never received.
	primary.SetConf(t, "synchronized_standby_slots", "")
	harness.WaitRecords(t, e.Brokers, e.Name, nBefore+nLagging+waiting.rows, 2*time.Minute)
	harness.WaitConfirmedPast(t, harness.Outbox{Services: harness.Services{DatabaseURL: primary.URL}, Name: e.Name}, afterLagging.String(), time.Minute)
	confirmedOld := harness.SlotConfirmed(t, primary.URL, e.Name)
	if waiting.returned() {
		t.Fatalf("the synchronous COMMIT returned although the standby is down")
	}

	// 3. The primary dies; the standby comes back and is promoted.
	killed := time.Now()
	primary.Script("kill")
	if err := waiting.wait(t); err == nil {
		t.Fatalf("the synchronous COMMIT succeeded although its server was killed before the standby received it")
	}
	standby.Start()
	var syncedStr, replayStr string
	if err := harness.QueryRow(ctx, standby.URL, `SELECT confirmed_flush_lsn::text, pg_last_wal_replay_lsn()::text FROM pg_replication_slots WHERE slot_name = $1 AND synced`,
		[]any{e.Name}, &syncedStr, &replayStr); err != nil {
		t.Fatalf("read the synchronized slot %s on the standby: %v", e.Name, err)
	}
	synced, replay := harness.MustLSN(t, syncedStr), harness.MustLSN(t, replayStr)
	if synced >= confirmedOld || replay >= afterLagging {
		t.Errorf("the standby's synchronized slot is at %s and its WAL ends at %s; want both behind the old primary's confirmed %s and batch 2's end %s",
			synced, replay, confirmedOld, afterLagging)
	}
	standby.Script("promote")
	waitStreamingAgain(t, relay)
	takeover := time.Since(killed)

	// Batch 4 on the new primary; the relay must publish every row of its table.
	nPromoted := writeBatch(t, standby.URL, e.Name, batchPromoted, 150, failoverChannels, "on")
	truth, rows := tableRows(t, standby.URL, e.Name)
	end := harness.CurrentWAL(t, standby.URL)
	harness.WaitConfirmedPast(t, harness.Outbox{Services: harness.Services{DatabaseURL: standby.URL}, Name: e.Name}, end, 2*time.Minute)
	recs = harness.WaitRecords(t, e.Brokers, e.Name, rows, 2*time.Minute)
	relay.Stop(30 * time.Second)

	f := phantomFigures(t, recs, truth)
	if f.phantoms != nLagging+waiting.rows {
		t.Errorf("%d distinct events in Kafka have no row in the promoted database; want the %d rows of batches 2 and 3", f.phantoms, nLagging+waiting.rows)
	}
	if f.missing != 0 {
		t.Errorf("%d rows of the promoted database are not in Kafka: the relay skipped them", f.missing)
	}
	if f.counterClash == 0 || f.positionClash == 0 {
		t.Errorf("no batch-4 event shares a channel counter (%d) or lies at or below a phantom's position in its channel (%d); the new timeline should reuse them",
			f.counterClash, f.positionClash)
	}
	if !strings.Contains(relay.Log.String(), "where timeline 2 forked from it") {
		t.Errorf("the relay did not distrust the phantom tails written on timeline 1 after the fork")
	}
	var inDB int
	if err := harness.QueryRow(ctx, standby.URL, fmt.Sprintf(`SELECT count(*) FROM %s WHERE data->>'writer' IN ('%d', '%d')`, e.Name, batchLagging, batchWaiting), nil, &inDB); err != nil {
		t.Fatal(err)
	}
	if inDB != 0 {
		t.Errorf("the promoted database holds %d rows of batches 2 and 3; the standby was down when they were committed", inDB)
	}
	if rows != nBefore+nPromoted {
		t.Errorf("the promoted database holds %d outbox rows, want batch 1's %d and batch 4's %d", rows, nBefore, nPromoted)
	}
	t.Logf("without synchronized_standby_slots: rows in the promoted database %d (batch 1 %d, batch 4 %d), lost 0 unless reported above; "+
		"phantom events (in Kafka, not in the database) %d: %d committed with synchronous_commit=local, %d whose synchronous COMMIT never returned; "+
		"batch-4 events reusing a phantom's channel counter %d, its outbox id %d, at or below a phantom's position in their channel %d; "+
		"old primary confirmed %s, standby's synced slot %s, standby's WAL end %s; duplicates %d; relay streaming again %s after the kill (standby start included)",
		rows, nBefore, nPromoted, f.phantoms, nLagging, waiting.rows, f.counterClash, f.idClash, f.positionClash,
		confirmedOld, synced, replay, f.duplicates, takeover.Round(time.Millisecond))
}

// writeBatch commits n outbox rows in transactions of 1–3 rows on one connection, with the
// given synchronous_commit, each row's payload carrying its channel's next counter and the
// batch number (as payload.Writer). It returns n.
func writeBatch(t *testing.T, url, name string, batch, n, channels int, syncCommit string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := harness.Connect(t, url)
	if _, err := conn.Exec(ctx, `SELECT set_config('synchronous_commit', $1, false)`, syncCommit); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(batch), 15))
	bump := fmt.Sprintf(`UPDATE %s_counters SET n = n + 1 WHERE channel = $1 RETURNING n`, name)
	insert := fmt.Sprintf(`INSERT INTO %s (channel, name, data) VALUES ($1, 'phantom', $2)`, name)
	for done := 0; done < n; {
		size := min(1+rng.IntN(3), n-done)
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for range size {
				p := harness.Payload{Channel: fmt.Sprintf("ch-%d", rng.IntN(channels)), Writer: batch}
				if err := tx.QueryRow(ctx, bump, p.Channel).Scan(&p.Counter); err != nil {
					return err
				}
				data, _ := json.Marshal(p)
				if _, err := tx.Exec(ctx, insert, p.Channel, data); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("batch %d: %v", batch, err)
		}
		done += size
	}
	return n
}

// waitingCommit is one transaction whose COMMIT waits for a synchronous standby that is down.
type waitingCommit struct {
	rows int
	done chan error
}

func (w *waitingCommit) returned() bool {
	select {
	case err := <-w.done:
		w.done <- err
		return true
	default:
		return false
	}
}

// wait returns the COMMIT's outcome, or fails the test if it has none within a minute.
func (w *waitingCommit) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w.done:
		return err
	case <-time.After(time.Minute):
		t.Fatalf("the synchronous COMMIT still waits a minute after its server was killed")
		return nil
	}
}

// startWaitingCommit commits a 3-row transaction of batch 3 with synchronous_commit = on in the
// background and returns once its COMMIT waits for the synchronous standby (wait event SyncRep).
func startWaitingCommit(t *testing.T, primary *harness.PrivatePostgres, name string, channels int) *waitingCommit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, primary.URL)
	if err != nil {
		t.Fatal(err)
	}
	w := &waitingCommit{rows: 3, done: make(chan error, 1)}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range w.rows {
		p := harness.Payload{Channel: fmt.Sprintf("ch-%d", i%channels), Writer: batchWaiting}
		if err := tx.QueryRow(ctx, fmt.Sprintf(`UPDATE %s_counters SET n = n + 1 WHERE channel = $1 RETURNING n`, name), p.Channel).Scan(&p.Counter); err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(p)
		if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (channel, name, data) VALUES ($1, 'phantom', $2)`, name), p.Channel, data); err != nil {
			t.Fatal(err)
		}
	}
	pid := conn.PgConn().PID()
	go func() {
		err := tx.Commit(context.Background())
		_ = conn.Close(context.Background())
		w.done <- err
	}()
	for {
		var ev string
		err := harness.QueryRow(ctx, primary.URL, `SELECT coalesce(wait_event, '') FROM pg_stat_activity WHERE pid = $1`, []any{int(pid)}, &ev)
		if err == nil && ev == "SyncRep" {
			return w
		}
		if ctx.Err() != nil {
			t.Fatalf("the synchronous COMMIT (pid %d) is not waiting for the standby (wait event %q, %v)", pid, ev, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitWalsenderEvent waits until the walsender streaming the slot shows the wait event.
func waitWalsenderEvent(t *testing.T, p *harness.PrivatePostgres, slot, event string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var ev string
		err := harness.QueryRow(ctx, p.URL, `SELECT coalesce(a.wait_event, '') FROM pg_stat_activity a JOIN pg_replication_slots s ON s.active_pid = a.pid WHERE s.slot_name = $1`,
			[]any{slot}, &ev)
		cancel()
		if err == nil && ev == event {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the walsender of slot %s shows wait event %q after %s (%v), want %s", slot, ev, timeout, err, event)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitSyncedPast waits until the standby holds the slot as a synchronized slot confirmed at lsn
// or later.
func waitSyncedPast(t *testing.T, standby *harness.PrivatePostgres, slot string, want fmt.Stringer, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var got string
		err := harness.QueryRow(ctx, standby.URL, `SELECT coalesce(confirmed_flush_lsn, '0/0')::text FROM pg_replication_slots WHERE slot_name = $1 AND synced`, []any{slot}, &got)
		cancel()
		if err == nil && harness.MustLSN(t, got) >= harness.MustLSN(t, want.String()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby's synchronized slot %s is at %q after %s (%v), want %s; standby log:\n%s", slot, got, timeout, err, want, standby.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// countBatches counts the topic's records by batch (payload.Writer).
func countBatches(t *testing.T, recs []harness.Record) map[int]int {
	t.Helper()
	n := map[int]int{}
	for _, r := range recs {
		var p harness.Payload
		if err := json.Unmarshal(r.Value, &p); err != nil {
			t.Fatalf("record %d/%d: %v", r.Partition, r.Offset, err)
		}
		n[p.Writer]++
	}
	return n
}

// phantomCounts is what TestFailover_WithoutSynchronizedStandbySlots found in Kafka.
type phantomCounts struct {
	phantoms      int // distinct events without a row in the database
	missing       int // rows of the database without an event
	duplicates    int // further copies of an event
	counterClash  int // events of the database that share channel and counter with a phantom
	idClash       int // events of the database that share pgoutbox-id with a phantom
	positionClash int // events of the database at or below a phantom's position in their channel
}

// phantomFigures compares the topic with the database's rows (truth).
func phantomFigures(t *testing.T, recs []harness.Record, truth *harness.CommittedRows) phantomCounts {
	t.Helper()
	type key struct {
		channel string
		counter int64
	}
	inDB := map[key]bool{}
	for ch, counters := range truth.Rows {
		for _, c := range counters {
			inDB[key{ch, c}] = true
		}
	}
	var f phantomCounts
	seen := map[string]bool{}
	phantomAt := map[key]bool{}
	phantomIDs := map[string]bool{}
	maxPhantomPos := map[string]string{}
	var promoted []harness.Record
	found := map[key]bool{}
	for _, r := range recs {
		var p harness.Payload
		if err := json.Unmarshal(r.Value, &p); err != nil {
			t.Fatalf("record %d/%d: %v", r.Partition, r.Offset, err)
		}
		id := fmt.Sprintf("%d/%s/%d", p.Writer, p.Channel, p.Counter)
		if seen[id] {
			f.duplicates++
			continue
		}
		seen[id] = true
		k := key{p.Channel, p.Counter}
		if p.Writer == batchLagging || p.Writer == batchWaiting {
			f.phantoms++
			phantomAt[k] = true
			phantomIDs[r.Headers["pgoutbox-id"]] = true
			if pos := r.Headers["pgoutbox-position"]; pos > maxPhantomPos[p.Channel] {
				maxPhantomPos[p.Channel] = pos
			}
			continue
		}
		found[k] = true
		if p.Writer == batchPromoted {
			promoted = append(promoted, r)
		}
	}
	for k := range inDB {
		if !found[k] {
			f.missing++
		}
	}
	for _, r := range promoted {
		var p harness.Payload
		_ = json.Unmarshal(r.Value, &p)
		if phantomAt[key{p.Channel, p.Counter}] {
			f.counterClash++
		}
		if phantomIDs[r.Headers["pgoutbox-id"]] {
			f.idClash++
		}
		if top, ok := maxPhantomPos[p.Channel]; ok && r.Headers["pgoutbox-position"] <= top {
			f.positionClash++
		}
	}
	return f
}
