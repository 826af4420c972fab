//go:build integration

package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
	cc := newCounterChannels(t, e, channels)
	count := func(n int) {
		t.Helper()
		if err := cc.count(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}

	cf := harness.StartCentrifugo(t, e.Brokers, e.Name)
	env := []string{"PGOUTBOX_LOG_LEVEL=info", "PGOUTBOX_SHUTDOWN_TIMEOUT=5s"}
	relay := e.StartRelay(t, env...)
	relay.WaitLog("streaming started", time.Minute)
	count(1)
	harness.WaitRecords(t, e.Brokers, e.Name, cc.events(), time.Minute)
	pages := cc.startPages(t, cf, pageCount)
	count(before - 1) // applied live by the pages
	harness.WaitRecords(t, e.Brokers, e.Name, cc.events(), time.Minute)

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
	recs := waitEvents(t, e, cc.events(), time.Minute)
	relay.Stop(30 * time.Second)

	fig := cc.check(t, pages, recs, pageCount)
	t.Logf("%d events on %d channels (%d per channel committed with no slot, republished by recover); %s", cc.events(), channels, inTheGap, fig)
	// Each model applied the events streamed before the loss and the republished ones before its
	// re-sync (what it received after the re-sync's snapshot depends on timing).
	if least := fig.Models * (before - 1 + inTheGap); fig.Events < least {
		t.Errorf("the pages applied %d events, want at least %d (the live ones before the loss and the republished ones)", fig.Events, least)
	}
}

// TestPublicationRecover_BrowserPages: the same pages across a publication stretch: the outbox
// dropped from the publication for 2 s under a writer on every channel, the relay stopped by its
// guard, `pgoutbox recover --apply` (which publishes the stretch's events with their true
// positions, and the events committed after it), the relay started again. Every page applies
// the recovered events, re-syncs on each channel's control record, and ends equal to the
// database, nothing applied twice.
func TestPublicationRecover_BrowserPages(t *testing.T) {
	t.Parallel()
	const (
		channels  = 4
		pageCount = 2
	)
	e := harness.NewOutbox(t, 2)
	cc := newCounterChannels(t, e, channels)
	cf := harness.StartCentrifugo(t, e.Brokers, e.Name)
	env := []string{"PGOUTBOX_LOG_LEVEL=info", "PGOUTBOX_SHUTDOWN_TIMEOUT=5s"}
	relay := e.StartRelay(t, env...)
	relay.WaitLog("streaming started", time.Minute)
	if err := cc.count(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	harness.WaitRecords(t, e.Brokers, e.Name, cc.events(), time.Minute)
	pages := cc.startPages(t, cf, pageCount)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wrote := make(chan error, 1)
	go func() { // a round of events on every channel every 20 ms, until cancelled
		for ctx.Err() == nil {
			if err := cc.count(context.Background(), 1); err != nil {
				wrote <- err
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		wrote <- nil
	}()
	time.Sleep(time.Second) // applied live by the pages
	streamed := cc.events()
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`ALTER PUBLICATION %[1]s DROP TABLE %[1]s`, e.Name))
	time.Sleep(2 * time.Second)
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`ALTER PUBLICATION %[1]s ADD TABLE %[1]s`, e.Name))
	select {
	case <-relay.Done:
	case <-time.After(time.Minute):
		t.Fatal("the relay kept running after the publication stopped covering the outbox")
	}
	cancel()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	code, out := runWith(t, e, env, "recover", "--apply")
	if code != 0 || !strings.Contains(out, "the stretch is closed") {
		t.Fatalf("pgoutbox recover --apply exit %d:\n%s", code, out)
	}
	relay = e.StartRelay(t, env...)
	relay.WaitLog("streaming started", time.Minute)
	if err := cc.count(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	recs := waitEvents(t, e, cc.events(), time.Minute)
	relay.Stop(30 * time.Second)

	fig := cc.check(t, pages, recs, pageCount)
	t.Logf("%d events on %d channels (%d before the publication broke); recover said:\n%s", cc.events(), channels, streamed, lastLine(out))
	t.Logf("%s", fig)
}

// counterChannels are the channels of a browser recovery test: each has a counter row in the
// table, and each event (`counter`, {"v": the counter after its commit}) adds one to it, in its
// own transaction, as the models page's merge expects.
type counterChannels struct {
	e     harness.Outbox
	table string
	chans []string
	conn  *pgx.Conn
	mu    sync.Mutex
	n     int // events committed
}

func newCounterChannels(t *testing.T, e harness.Outbox, n int) *counterChannels {
	t.Helper()
	cc := &counterChannels{e: e, table: e.Name + "_counters", conn: harness.Connect(t, e.DatabaseURL)}
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`CREATE TABLE %s (channel text PRIMARY KEY, value bigint NOT NULL)`, cc.table))
	for i := range n {
		cc.chans = append(cc.chans, fmt.Sprintf("outbox:%s_c%d", e.Name, i)) // Centrifugo's namespace
		harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s VALUES ($1, 0)`, cc.table), cc.chans[i])
	}
	return cc
}

// count commits n events on every channel.
func (cc *counterChannels) count(ctx context.Context, n int) error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for range n {
		for _, ch := range cc.chans {
			_, err := cc.conn.Exec(ctx, fmt.Sprintf(`WITH c AS (UPDATE %s SET value = value + 1 WHERE channel = $1 RETURNING value)
				INSERT INTO %s (channel, name, data) SELECT $1, 'counter', jsonb_build_object('v', c.value) FROM c`, cc.table, cc.e.Name), ch)
			if err != nil {
				return err
			}
			cc.n++
		}
	}
	return nil
}

func (cc *counterChannels) events() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.n
}

// startPages opens n Chromium pages, each following every channel, and waits until they do.
func (cc *counterChannels) startPages(t *testing.T, cf *harness.Centrifugo, n int) *harness.Pages {
	t.Helper()
	follow := make([][]string, n)
	for i := range follow {
		follow[i] = cc.chans
	}
	return harness.StartCounterPages(t, harness.CounterPagesConfig{
		Centrifugo: cf.API(), Tokens: cf.Tokens(), WSURL: cf.WSURL(), DatabaseURL: cc.e.DatabaseURL, Counters: cc.table, Channels: follow,
	})
}

// check gives the pages the database's counters, waits for their figures and checks them: every
// page converged to the database with no anomaly (an event applied twice, a value that does not
// follow its state's, an error), each model re-synced at least once — on its channel's control
// record, of which recs must hold one per channel — and it returns the figures.
func (cc *counterChannels) check(t *testing.T, pages *harness.Pages, recs []harness.Record, pageCount int) harness.PageFigures {
	t.Helper()
	final := map[string]int64{}
	for _, ch := range cc.chans {
		var v int64
		if err := cc.conn.QueryRow(context.Background(), fmt.Sprintf(`SELECT value FROM %s WHERE channel = $1`, cc.table), ch).Scan(&v); err != nil {
			t.Fatal(err)
		}
		final[ch] = v
	}
	pages.Release(final)
	fig := pages.Wait()
	for _, a := range fig.Anomalies {
		t.Errorf("browser page: %s", a)
	}
	resyncRecords := map[string]int{}
	for _, r := range recs {
		if r.Headers["pgoutbox-control"] == "resync" {
			resyncRecords[r.Headers["pgoutbox-channel"]]++
		}
	}
	for _, ch := range cc.chans {
		if resyncRecords[ch] != 1 {
			t.Errorf("channel %s has %d re-sync records, want 1", ch, resyncRecords[ch])
		}
	}
	if fig.Pages != pageCount || fig.Models != pageCount*len(cc.chans) {
		t.Errorf("%d pages with %d models reported, want %d with %d", fig.Pages, fig.Models, pageCount, pageCount*len(cc.chans))
	}
	// A model's first sync, its bootstrap, is not counted.
	if fig.Resyncs < fig.Models {
		t.Errorf("%d re-syncs for %d models: a model did not re-sync on its channel's control record", fig.Resyncs, fig.Models)
	}
	return fig
}
