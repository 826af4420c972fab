//go:build integration

package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestPublicationGuard_Alter: an ALTER PUBLICATION that leaves the outbox inserts covered
// throughout (publish_via_partition_root on an unpartitioned outbox, update added to publish)
// gives the publication's catalog row a new version, which the guard used to report as a
// possible loss (exit 1, a stretch to recover). Now the relay verifies it from the WAL — the
// stretch read again through the recovery publication, every event's position looked up in
// Kafka — and streams on: no lost alarm, no stretch, `status` ok, every row once. The same kind
// of change undone at once with a row committed in between (publish without insert, a row,
// publish with insert) filtered that row: it is reported as a stretch, and following the advice
// (`pgoutbox recover --apply`) brings the row, once.
func TestPublicationGuard_Alter(t *testing.T) {
	for _, tt := range []struct {
		name  string
		alter string // %[1]s = publication
	}{
		{"publish_via_partition_root on an unpartitioned outbox", `ALTER PUBLICATION %[1]s SET (publish_via_partition_root = true)`},
		{"update added to publish", `ALTER PUBLICATION %[1]s SET (publish = 'insert, update')`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := harness.NewOutbox(t, 1)
			relay := e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
			relay.WaitLog("streaming started", time.Minute)
			w := startGuardWriter(t, e)
			harness.WaitRecords(t, e.Brokers, e.Name, 50, time.Minute)

			// A first start may verify too (the signal of TestPublicationGuard_ChangedWhileDown).
			const verifiedMsg = "publication change verified: it covered the outbox inserts throughout (every event of the stretch is in Kafka); streaming on"
			before := len(relay.LogEntries(verifiedMsg))
			harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(tt.alter, e.Name))
			deadline := time.Now().Add(time.Minute)
			for len(relay.LogEntries(verifiedMsg)) == before {
				if time.Now().After(deadline) || !relay.Running() {
					t.Fatalf("the change was not verified in a minute:\n%s", relay.InfoTail(8))
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(2 * time.Second) // rows after the change, through later checks
			ids := w.stop(t, e)
			harness.WaitRecords(t, e.Brokers, e.Name, len(ids), time.Minute)
			if !relay.Running() {
				t.Fatalf("the relay stopped after a harmless ALTER PUBLICATION: %v\n%s", relay.Err, relay.InfoTail(5))
			}
			log := relay.Log.String()
			for _, bad := range []string{"slot alarm lost", "may be missing", "publication stretch recorded"} {
				if strings.Contains(log, bad) {
					t.Errorf("a harmless ALTER PUBLICATION was reported as a loss (%q):\n%s", bad, relay.InfoTail(8))
				}
			}
			if code, out := e.StatusExit(t); code != 0 {
				t.Errorf("pgoutbox status exit %d after a harmless ALTER PUBLICATION, want 0:\n%s", code, out)
			}
			time.Sleep(time.Second) // a duplicate would have arrived by now
			relay.Stop(30 * time.Second)
			recs, err := harness.ReadTopic(context.Background(), e.Brokers, e.Name)
			if err != nil {
				t.Fatal(err)
			}
			if got := recordIDs(recs); !slices.Equal(got, ids) {
				i := 0
				for i < min(len(got), len(ids)) && got[i] == ids[i] {
					i++
				}
				t.Errorf("topic holds %d records, want the %d rows once each, in commit order; first difference at %d: %v vs %v",
					len(got), len(ids), i, got[max(0, i-2):min(len(got), i+3)], ids[max(0, i-2):min(len(ids), i+3)])
			}
			verified := relay.LogEntries(verifiedMsg)
			t.Logf("%d rows, %d records; the ALTER's verification read %v events of the stretch through %v", len(ids), len(recs),
				verified[before]["events_verified"], verified[before]["through_lsn"])
		})
	}

	t.Run("publish without insert and back, a row in between", func(t *testing.T) {
		t.Parallel()
		e := harness.NewOutbox(t, 1)
		relay := e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
		relay.WaitLog("streaming started", time.Minute)
		w := startGuardWriter(t, e)
		harness.WaitRecords(t, e.Brokers, e.Name, 50, time.Minute)

		// Three transactions on one connection, usually between two checks of the guard.
		conn := harness.Connect(t, e.DatabaseURL)
		ctx := context.Background()
		var filtered string
		if _, err := conn.Exec(ctx, fmt.Sprintf(`ALTER PUBLICATION %s SET (publish = 'update')`, e.Name)); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, fmt.Sprintf(`INSERT INTO %s (channel, name, data) VALUES ('c', 'filtered', '{}') RETURNING sequence_id::text`, e.Name)).Scan(&filtered); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf(`ALTER PUBLICATION %s SET (publish = 'insert')`, e.Name)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-relay.Done:
		case <-time.After(time.Minute):
			t.Fatal("the relay kept running after an insert was filtered")
		}
		time.Sleep(500 * time.Millisecond)
		w.stop(t, e)
		log := relay.Log.String()
		for _, want := range []string{"slot alarm lost", "may be missing from Kafka", "pgoutbox recover --apply", "publication stretch recorded"} {
			if !strings.Contains(log, want) {
				t.Errorf("the relay's log lacks %q:\n%s", want, relay.InfoTail(6))
			}
		}
		// The reason: a check saw the publication without inserts, or the verification found the row.
		if !strings.Contains(log, "does not publish inserts") && !strings.Contains(log, "did not cover them throughout") {
			t.Errorf("the stop does not say why:\n%s", relay.InfoTail(6))
		}

		if code, out := e.RunExit(t, "recover", "--apply"); code != 0 {
			t.Fatalf("pgoutbox recover --apply exit %d:\n%s", code, out)
		}
		ids := tableIDs(t, e)
		relay = e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
		relay.WaitLog("streaming started", time.Minute)
		recs := waitEvents(t, e, len(ids), time.Minute)
		time.Sleep(time.Second)
		relay.Stop(30 * time.Second)
		seen := map[string]int{}
		for _, r := range recs {
			if r.Headers["pgoutbox-control"] == "" {
				seen[r.Headers["pgoutbox-id"]]++
			}
		}
		bad := 0
		for _, id := range ids {
			if seen[id] != 1 {
				bad++
				t.Errorf("row %s is in Kafka %d times, want once", id, seen[id])
			}
		}
		t.Logf("%d rows (the filtered one: %s), %d records; %d not exactly once", len(ids), filtered, len(recs), bad)
	})
}

// TestPublicationGuard_ChangedWhileDown: the publication is altered while no relay runs. Its
// catalog rows are then newer than the slot's catalog_xmin, and the next start verifies the WAL
// it decodes first before confirming past the slot's position. Harmless (publish_via_partition_root):
// it streams on, every row once. With a row filtered (publish = 'update', a row, publish =
// 'insert', all while down — which no check could see, and which lost the row silently before):
// it stops naming the stretch, and `pgoutbox recover --apply` brings the row, once.
func TestPublicationGuard_ChangedWhileDown(t *testing.T) {
	for _, tt := range []struct {
		name     string
		filtered bool
	}{{"harmless", false}, {"a row filtered", true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := harness.NewOutbox(t, 1)
			relay := e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
			relay.WaitLog("streaming started", time.Minute)
			for range 5 {
				insertReturningID(t, e, "c", `{}`, "")
			}
			harness.WaitRecords(t, e.Brokers, e.Name, 5, time.Minute)
			time.Sleep(3 * time.Second) // let the slot confirm them
			relay.Stop(30 * time.Second)

			conn := harness.Connect(t, e.DatabaseURL)
			ctx := context.Background()
			exec := func(sql string) {
				t.Helper()
				if _, err := conn.Exec(ctx, fmt.Sprintf(sql, e.Name)); err != nil {
					t.Fatal(err)
				}
			}
			var filtered string
			if tt.filtered {
				exec(`ALTER PUBLICATION %s SET (publish = 'update')`)
				filtered = insertReturningID(t, e, "c", `{"filtered": true}`, "")
				exec(`ALTER PUBLICATION %s SET (publish = 'insert')`)
			} else {
				exec(`ALTER PUBLICATION %s SET (publish_via_partition_root = true)`)
			}
			for range 5 {
				insertReturningID(t, e, "c", `{}`, "")
			}
			ids := tableIDs(t, e)
			if _, out := e.StatusExit(t); !strings.Contains(out, "changed after the oldest WAL the slot may decode") {
				t.Errorf("pgoutbox status does not show the signal:\n%s", out)
			}

			relay = e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
			relay.WaitLog("the publication changed after the oldest WAL the slot may decode", time.Minute)
			if !tt.filtered {
				relay.WaitLog("publication change verified", time.Minute)
				waitEvents(t, e, len(ids), time.Minute)
				time.Sleep(time.Second)
				if !relay.Running() {
					t.Fatalf("the relay stopped: %v\n%s", relay.Err, relay.InfoTail(5))
				}
				relay.Stop(30 * time.Second)
				if log := relay.Log.String(); strings.Contains(log, "slot alarm lost") {
					t.Errorf("a harmless change made while down was reported as a loss:\n%s", relay.InfoTail(6))
				}
			} else {
				select {
				case <-relay.Done:
				case <-time.After(time.Minute):
					t.Fatal("the relay kept running although a row committed while it was down was filtered")
				}
				log := relay.Log.String()
				for _, want := range []string{"slot alarm lost", "did not cover them throughout", "id " + filtered, "publication stretch recorded", "pgoutbox recover --apply"} {
					if !strings.Contains(log, want) {
						t.Errorf("the relay's log lacks %q:\n%s", want, relay.InfoTail(6))
					}
				}
				code, out := e.RunExit(t, "recover", "--apply")
				if code != 0 {
					t.Fatalf("pgoutbox recover --apply exit %d:\n%s", code, out)
				}
				t.Logf("recover --apply said:\n%s", out)
				relay = e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
				relay.WaitLog("streaming started", time.Minute)
				waitEvents(t, e, len(ids), time.Minute)
				time.Sleep(time.Second)
				relay.Stop(30 * time.Second)
			}
			recs, err := harness.ReadTopic(ctx, e.Brokers, e.Name)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			for _, r := range recs {
				if r.Headers["pgoutbox-control"] == "" {
					seen[r.Headers["pgoutbox-id"]]++
				}
			}
			for _, id := range ids {
				if seen[id] != 1 {
					t.Errorf("row %s is in Kafka %d times, want once", id, seen[id])
				}
			}
			if code, out := e.StatusExit(t); code != 0 {
				t.Errorf("pgoutbox status exit %d at the end, want 0:\n%s", code, out)
			}
			t.Logf("%d rows, %d records (filtered row: %q)", len(ids), len(recs), filtered)
		})
	}
}

// guardWriter inserts one row per transaction until stopped.
type guardWriter struct {
	cancel func()
	wg     sync.WaitGroup
}

func startGuardWriter(t *testing.T, e harness.Outbox) *guardWriter {
	ctx, cancel := context.WithCancel(context.Background())
	w := &guardWriter{cancel: cancel}
	conn := harness.Connect(t, e.DatabaseURL)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for ctx.Err() == nil {
			if _, err := conn.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (channel, name, data) VALUES ('c', 'alter', '{}')`, e.Name)); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return w
}

// stop ends the writer and returns the ids of every row in the outbox, in commit order (one
// writer, one row per transaction: the order of the ids).
func (w *guardWriter) stop(t *testing.T, e harness.Outbox) []string {
	w.cancel()
	w.wg.Wait()
	return tableIDs(t, e)
}

// tableIDs lists the outbox's row ids in id order.
func tableIDs(t *testing.T, e harness.Outbox) []string {
	t.Helper()
	rows, err := harness.Connect(t, e.DatabaseURL).Query(context.Background(), fmt.Sprintf(`SELECT sequence_id::text AS id FROM %s ORDER BY sequence_id`, e.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}
