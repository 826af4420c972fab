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

// TestPublicationGuard: the outbox leaves the publication for a few seconds while writers
// insert and the relay streams. PostgreSQL does not send the inserts committed meanwhile; the
// relay must not confirm past them from keepalives (on the old main it confirmed the slot 0
// bytes behind and logged nothing). It stops with the lost alarm, naming the stretch, and the
// slot stays before the first row that was not published.
func TestPublicationGuard(t *testing.T) {
	for _, tt := range []struct {
		name              string
		breakSQL, mendSQL string // %[1]s = publication, %[2]s = table
		hold              time.Duration
		want              string
	}{
		{"drop table for 3s", `ALTER PUBLICATION %[1]s DROP TABLE %[2]s`, `ALTER PUBLICATION %[1]s ADD TABLE %[2]s`, 3 * time.Second, "does not include"},
		{"publish update and delete for 2s", `ALTER PUBLICATION %[1]s SET (publish = 'update, delete')`, `ALTER PUBLICATION %[1]s SET (publish = 'insert')`, 2 * time.Second, "does not publish inserts"},
		// Undone at once, usually between two checks: then only the catalog rows' versions show
		// it (on a slow machine a check can still fall in between and see the table missing).
		{"drop and re-add at once", `ALTER PUBLICATION %[1]s DROP TABLE %[2]s`, `ALTER PUBLICATION %[1]s ADD TABLE %[2]s`, 0, "changed since the relay started|does not include"},
		{"left broken", `ALTER PUBLICATION %[1]s DROP TABLE %[2]s`, "", 0, "does not include"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := harness.NewOutbox(t, 1)
			relay := e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
			relay.WaitLog("streaming started", time.Minute)

			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var mu sync.Mutex
			committed := 0
			wg.Add(1)
			go func() { // one writer, one row per transaction, until cancelled
				defer wg.Done()
				conn := harness.Connect(t, e.DatabaseURL)
				for ctx.Err() == nil {
					if _, err := conn.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (channel, name, data) VALUES ('c', 'guard', '{}')`, e.Name)); err != nil {
						return
					}
					mu.Lock()
					committed++
					mu.Unlock()
					time.Sleep(5 * time.Millisecond)
				}
			}()
			harness.WaitRecords(t, e.Brokers, e.Name, 50, time.Minute)

			before := harness.MustLSN(t, harness.CurrentWAL(t, e.DatabaseURL))
			harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(tt.breakSQL, e.Name, e.Name))
			after := harness.MustLSN(t, harness.CurrentWAL(t, e.DatabaseURL))
			time.Sleep(tt.hold)
			if tt.mendSQL != "" {
				harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(tt.mendSQL, e.Name, e.Name))
			}
			select {
			case <-relay.Done:
			case <-time.After(time.Minute):
				t.Fatal("the relay kept running after the publication stopped covering the outbox")
			}
			time.Sleep(500 * time.Millisecond) // rows committed after the mend
			cancel()
			wg.Wait()

			if relay.Err == nil {
				t.Fatal("the relay exited 0; a stop that is not a requested shutdown must exit non-zero")
			}
			log := relay.Log.String()
			for _, want := range []string{"the publication stopped covering the outbox inserts", tt.want, "may be missing from Kafka", "pgoutbox recover --apply"} {
				// want may list alternatives, separated by '|'.
				if !slices.ContainsFunc(strings.Split(want, "|"), func(w string) bool { return strings.Contains(log, w) }) {
					t.Errorf("the relay's log lacks %q:\n%s", want, relay.InfoTail(5))
				}
			}
			confirmed := harness.SlotConfirmed(t, e.DatabaseURL, e.Name)
			if confirmed > after {
				t.Errorf("slot confirmed %s, past the publication change (WAL %s..%s): the unpublished rows would be skipped for good", confirmed, before, after)
			}
			recs, err := harness.ReadTopic(context.Background(), e.Brokers, e.Name)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			t.Logf("%d rows committed, %d in Kafka; slot confirmed %s, change at WAL %s..%s", committed, len(recs), confirmed, before, after)
			mu.Unlock()
		})
	}
}
