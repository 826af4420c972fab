//go:build integration

package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestSlotLost_BrowserPages: real Chromium pages on the @pgoutbox/models SDK, subscribed through
// Centrifugo before the slot is lost, follow their channels across the loss: the slot dropped
// while no relay ran, events committed with no slot, `pgoutbox setup` (which finds the loss),
// `pgoutbox recover --apply`, the relay started again, more events. Every page applies the
// republished events, re-syncs on each channel's control record, and ends equal to the
// database, with no event applied twice and no value that does not follow its state's.
func TestSlotLost_BrowserPages(t *testing.T) {
	t.Parallel()
	const (
		channels   = 4
		pageCount  = 2
		before     = 3  // events per channel streamed before the loss
		inTheGap   = 20 // events per channel committed with no slot
		afterwards = 3  // events per channel streamed by the new slot
	)
	e := harness.NewOutbox(t, 2)
	counters := e.Name + "_counters"
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`CREATE TABLE %s (channel text PRIMARY KEY, value bigint NOT NULL)`, counters))
	chans := make([]string, channels)
	for i := range chans {
		chans[i] = fmt.Sprintf("outbox:%s_c%d", e.Name, i) // Centrifugo's namespace
		harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s VALUES ($1, 0)`, counters), chans[i])
	}
	conn := harness.Connect(t, e.DatabaseURL)
	events := 0
	// count commits n events on every channel, each its own transaction: the channel's counter
	// goes up by one, and the event carries the new value (the page's `counter` event).
	count := func(n int) {
		t.Helper()
		for range n {
			for _, ch := range chans {
				_, err := conn.Exec(context.Background(), fmt.Sprintf(`WITH c AS (UPDATE %s SET value = value + 1 WHERE channel = $1 RETURNING value)
					INSERT INTO %s (channel, name, data) SELECT $1, 'counter', jsonb_build_object('v', c.value) FROM c`, counters, e.Name), ch)
				if err != nil {
					t.Fatal(err)
				}
				events++
			}
		}
	}

	cf := harness.StartCentrifugo(t, e.Brokers, e.Name)
	env := []string{"PGOUTBOX_LOG_LEVEL=info", "PGOUTBOX_SHUTDOWN_TIMEOUT=5s"}
	relay := e.StartRelay(t, env...)
	relay.WaitLog("streaming started", time.Minute)
	count(1)
	harness.WaitRecords(t, e.Brokers, e.Name, events, time.Minute)
	follow := make([][]string, pageCount)
	for i := range follow {
		follow[i] = chans // every page follows every channel
	}
	pages := harness.StartCounterPages(t, harness.CounterPagesConfig{
		Centrifugo: cf.API(), Tokens: cf.Tokens(), WSURL: cf.WSURL(), DatabaseURL: e.DatabaseURL, Counters: counters, Channels: follow,
	})
	count(before - 1) // applied live by the pages
	harness.WaitRecords(t, e.Brokers, e.Name, events, time.Minute)

	// The loss: the relay stopped, the slot dropped, events committed with no slot.
	relay.Stop(30 * time.Second)
	harness.ExecSQL(t, e.DatabaseURL, `SELECT pg_drop_replication_slot($1)`, e.Name)
	count(inTheGap)
	if out, err := e.Pgoutbox(t, "setup"); err != nil || !strings.Contains(out, "recorded as a lost slot") {
		t.Fatalf("pgoutbox setup (err %v) did not record the loss:\n%s", err, out)
	}
	if r := e.StartRelay(t, env...); r.WaitExit(time.Minute) == 0 {
		t.Fatalf("the relay started on the re-created slot without recovery:\n%s", r.Log.Tail(3))
	}
	code, out := runWith(t, e, env, "recover", "--apply")
	if want := fmt.Sprintf("published %d events", channels*inTheGap); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("pgoutbox recover --apply exit %d, want %q:\n%s", code, want, out)
	}
	relay = e.StartRelay(t, env...)
	relay.WaitLog("streaming started", time.Minute)
	count(afterwards)
	recs := waitEvents(t, e, events, time.Minute)
	relay.Stop(30 * time.Second)

	resyncRecords := 0
	for _, r := range recs {
		if r.Headers["pgoutbox-control"] == "resync" {
			resyncRecords++
		}
	}
	final := map[string]int64{}
	for _, ch := range chans {
		var v int64
		if err := conn.QueryRow(context.Background(), fmt.Sprintf(`SELECT value FROM %s WHERE channel = $1`, counters), ch).Scan(&v); err != nil {
			t.Fatal(err)
		}
		final[ch] = v
	}
	pages.Release(final)
	fig := pages.Wait()
	for _, a := range fig.Anomalies {
		t.Errorf("browser page: %s", a)
	}
	t.Logf("%d events on %d channels (%d per channel committed with no slot, republished by recover), %d events in Kafka, %d re-sync records; %s",
		events, channels, inTheGap, countEvents(recs), resyncRecords, fig)
	if resyncRecords != channels {
		t.Errorf("%d re-sync records, want one per channel (%d)", resyncRecords, channels)
	}
	if fig.Pages != pageCount || fig.Models != pageCount*channels {
		t.Errorf("%d pages with %d models reported, want %d with %d", fig.Pages, fig.Models, pageCount, pageCount*channels)
	}
	// Each model re-synced on its channel's control record (a model's first sync, its
	// bootstrap, is not counted), and applied the events streamed before the loss and the
	// republished ones before it (what a page received after its re-sync's snapshot depends on
	// timing: at least the events after the recovery, unless the snapshot holds them).
	if fig.Resyncs < fig.Models {
		t.Errorf("%d re-syncs for %d models: a model did not re-sync on its channel's control record", fig.Resyncs, fig.Models)
	}
	if least := fig.Models * (before - 1 + inTheGap); fig.Events < least {
		t.Errorf("the pages applied %d events, want at least %d (the live ones before the loss and the republished ones)", fig.Events, least)
	}
}
