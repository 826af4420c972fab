//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/centrifugal/centrifuge-go"
	"github.com/jackc/pgx/v5"

	"github.com/pgoutbox/pgoutbox/checkpoint"
	pgrecord "github.com/pgoutbox/pgoutbox/record"
)

// bootClient is one browser in the bootstrap property test: it subscribes to one channel,
// bootstraps its state with the recipe of docs/fan-out.md (centrifuge-go calls GetState on the first
// subscribe and whenever Centrifugo cannot recover its position, e.g. after an epoch change),
// and applies events with the checkpoint rules.
type bootClient struct {
	name    string
	channel string
	cf      *harness.Centrifugo
	db      string // database URL
	table   string // the counters table

	mu             sync.Mutex
	state          int64 // the channel's counter, as this client knows it
	snap           checkpoint.Snapshot
	cursors        checkpoint.Cursors
	bootstraps     int
	bootTimes      []time.Time // when each bootstrap happened
	applied        int
	appliedInXip   int // applied events whose transaction was in progress at the bootstrap
	skippedVisible int // events already in the bootstrapped state
	skippedDup     int // events at or before the last applied position
	anomalies      []string
}

// getState is the app's state endpoint and the client's bootstrap at once: (1) the channel's
// stream position from Centrifugo (history, limit 0), then (2) one REPEATABLE READ transaction
// whose first statement takes the snapshot, then reads the state.
func (c *bootClient) getState(centrifuge.SubscriptionGetStateEvent) (centrifuge.StreamPosition, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	top, err := c.cf.StreamTop(ctx, c.channel)
	if err != nil {
		return centrifuge.StreamPosition{}, err
	}
	snap, value, err := harness.ReadCounter(ctx, c.db, c.table, c.channel)
	if err != nil {
		return centrifuge.StreamPosition{}, err
	}
	c.mu.Lock()
	c.state, c.snap, c.cursors = value, snap, checkpoint.Cursors{}
	c.bootstraps++
	c.bootTimes = append(c.bootTimes, time.Now())
	c.mu.Unlock()
	return centrifuge.StreamPosition{Offset: top.Offset, Epoch: top.Epoch}, nil
}

// onPublication applies one event: only if its transaction is not visible in the snapshot,
// and its position is past the last one applied. Each event adds 1 to the channel's counter and
// carries the counter's new value, so an applied event must carry state+1: anything else is a
// gap, a duplicate or a reordering.
func (c *bootClient) onPublication(ev centrifuge.PublicationEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	xid, err := strconv.ParseUint(ev.Tags["xid"], 10, 64)
	if err != nil {
		c.anomalies = append(c.anomalies, fmt.Sprintf("tag xid %q: %v", ev.Tags["xid"], err))
		return
	}
	pos, err := pgrecord.ParsePosition(ev.Tags["position"])
	if err != nil {
		c.anomalies = append(c.anomalies, err.Error())
		return
	}
	if c.snap.Visible(xid) {
		c.skippedVisible++
		return
	}
	if !c.cursors.Apply(c.channel, pos) {
		c.skippedDup++
		return
	}
	var data struct{ V int64 }
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		c.anomalies = append(c.anomalies, fmt.Sprintf("data %s: %v", ev.Data, err))
		return
	}
	if data.V != c.state+1 {
		c.anomalies = append(c.anomalies, fmt.Sprintf("applied value %d (xid %d, position %v, offset %d) on state %d (snapshot %v)",
			data.V, xid, pos, ev.Offset, c.state, c.snap))
	}
	if _, inXip := slices.BinarySearch(c.snap.Xip, xid); inXip {
		c.appliedInXip++
	}
	c.state = data.V
	c.applied++
}

func (c *bootClient) start(t *testing.T) {
	client := centrifuge.NewJsonClient(c.cf.WSURL(), centrifuge.Config{Token: c.cf.Token(c.name), HandshakeTimeout: harness.ClientHandshakeTimeout})
	t.Cleanup(client.Close)
	sub, err := client.NewSubscription(c.channel, centrifuge.SubscriptionConfig{
		Positioned: true, Recoverable: true, GetState: c.getState,
		// The token expires in an hour; the SDK asks again after a Centrifugo restart too.
		Token: c.cf.SubToken(c.name, c.channel),
		GetToken: func(centrifuge.SubscriptionTokenEvent) (string, error) {
			return c.cf.SubToken(c.name, c.channel), nil
		},
	})
	if err != nil {
		t.Errorf("%s: %v", c.name, err)
		return
	}
	sub.OnPublication(c.onPublication)
	sub.OnError(func(ev centrifuge.SubscriptionErrorEvent) {
		// GetState errors are retried by the SDK (e.g. while Centrifugo restarts).
		var gs centrifuge.SubscriptionGetStateError
		if !errors.As(ev.Error, &gs) {
			t.Logf("%s: subscription error: %v", c.name, ev.Error)
		}
	})
	if err := sub.Subscribe(); err != nil {
		t.Errorf("%s: subscribe: %v", c.name, err)
	}
	if err := client.Connect(); err != nil {
		// A failed first dial is scheduled again by the SDK (centrifuge-go's startReconnecting):
		// under load it is no failure; a client that never connects fails the final check.
		t.Logf("%s: first connect attempt failed, the SDK retries: %v", c.name, err)
	}
}

// TestFanout_BootstrapProperty: writers commit concurrently on several channels (a counter per
// channel is the ground truth, each event carries its new value); 24 clients bootstrap at
// random moments with the recipe of docs/fan-out.md and apply events; at the end every client's state
// equals the database's, and no event was applied twice, skipped or out of order. The hard
// cases are forced: transactions held open across bootstraps (the snapshot's in-progress list
// is not empty and they commit after it), transactions whose outbox id was taken before another
// transaction's that commits first (a lower id committing after a higher one), a relay SIGKILL
// and restart, and a Centrifugo restart (memory engine: new epochs; every client must notice
// and bootstrap again).
func TestFanout_BootstrapProperty(t *testing.T) {
	t.Parallel()
	const (
		channels = 4
		clients  = 24
		writers  = 4
		holders  = 2 // goroutines that hold transactions open
		duration = 24 * time.Second
	)
	e := harness.NewOutbox(t, 3)
	counters := e.Name + "_counters"
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`CREATE TABLE %s (channel text PRIMARY KEY, value bigint NOT NULL)`, counters))
	t.Cleanup(func() { harness.ExecInCleanup(t, e.DatabaseURL, "DROP TABLE IF EXISTS "+counters) })
	chans := make([]string, channels)
	for i := range chans {
		chans[i] = fmt.Sprintf("outbox:%s_%d", e.Name, i)
		harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s VALUES ($1, 0)`, counters), chans[i])
	}
	seq := e.Name + "_sequence_id_seq"
	relay := e.StartRelay(t)
	cf := harness.StartCentrifugo(t, e.Brokers, e.Name)

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var events, held, earlyIDs atomic.Int64
	// commit runs one writer transaction on channel ch: an optional early outbox id (taken
	// before the counter's row lock, so a transaction that locks it first commits a higher id
	// first), an optional pause holding the transaction open with an xid assigned.
	commit := func(conn *pgx.Conn, ch string, early bool, hold time.Duration) error {
		bg := context.Background()
		tx, err := conn.Begin(bg)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(bg) }()
		var id int64
		if early {
			if err := tx.QueryRow(bg, `SELECT nextval($1)`, seq).Scan(&id); err != nil {
				return err
			}
		}
		if hold > 0 {
			if _, err := tx.Exec(bg, `SELECT pg_current_xact_id()`); err != nil { // in every snapshot's xip from now on
				return err
			}
			time.Sleep(hold)
		}
		var v int64
		if err := tx.QueryRow(bg, fmt.Sprintf(`UPDATE %s SET value = value + 1 WHERE channel = $1 RETURNING value`, counters), ch).Scan(&v); err != nil {
			return err
		}
		data := fmt.Sprintf(`{"v": %d}`, v)
		if early {
			_, err = tx.Exec(bg, fmt.Sprintf(`INSERT INTO %s (sequence_id, channel, name, data) VALUES ($1, $2, 'inc', $3)`, e.Name), id, ch, data)
		} else {
			_, err = tx.Exec(bg, fmt.Sprintf(`INSERT INTO %s (channel, name, data) VALUES ($1, 'inc', $2)`, e.Name), ch, data)
		}
		if err != nil {
			return err
		}
		if err := tx.Commit(bg); err != nil {
			return err
		}
		events.Add(1)
		if early {
			earlyIDs.Add(1)
		}
		if hold > 0 {
			held.Add(1)
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers+holders)
	for w := range writers + holders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			conn, err := pgx.Connect(context.Background(), e.DatabaseURL)
			if err != nil {
				errs <- err
				return
			}
			defer func() { _ = conn.Close(context.Background()) }()
			for ctx.Err() == nil {
				ch := chans[rng.IntN(channels)]
				var hold time.Duration
				if w >= writers {
					hold = time.Duration(200+rng.IntN(1500)) * time.Millisecond
				}
				if err := commit(conn, ch, rng.IntN(4) == 0, hold); err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
			}
		}()
	}

	// Clients start at random moments over the first 80% of the run; the relay is killed and
	// restarted at 30%, Centrifugo restarted at 60%.
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	cs := make([]*bootClient, clients)
	starts := make([]time.Duration, clients)
	for i := range cs {
		cs[i] = &bootClient{name: fmt.Sprintf("client-%02d", i), channel: chans[i%channels], cf: cf, db: e.DatabaseURL, table: counters}
		starts[i] = time.Duration(rng.Int64N(int64(duration * 8 / 10)))
	}
	type action struct {
		at time.Duration
		do func()
	}
	var cfRestartAt time.Time
	actions := []action{
		{duration * 3 / 10, func() {
			relay.Kill()
			t.Log("relay killed (SIGKILL); restarting it")
			relay = e.StartRelay(t)
		}},
		{duration * 6 / 10, func() {
			cf.Restart()
			cfRestartAt = time.Now()
			t.Log("centrifugo restarted (memory engine: new epochs)")
		}},
	}
	for i := range cs {
		actions = append(actions, action{starts[i], func() { cs[i].start(t) }})
	}
	sort.Slice(actions, func(a, b int) bool { return actions[a].at < actions[b].at })
	begin := time.Now()
	for _, a := range actions {
		time.Sleep(time.Until(begin.Add(a.at)))
		a.do()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Every client converges to the database's counter, or the test names who did not.
	truth := map[string]int64{}
	conn := harness.Connect(t, e.DatabaseURL)
	rows, err := conn.Query(context.Background(), fmt.Sprintf(`SELECT channel, value FROM %s`, counters))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var ch string
		var v int64
		if err := rows.Scan(&ch, &v); err != nil {
			t.Fatal(err)
		}
		truth[ch] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		behind := 0
		for _, c := range cs {
			c.mu.Lock()
			if c.state != truth[c.channel] {
				behind++
			}
			c.mu.Unlock()
		}
		if behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d of %d clients did not reach the database's state within 90s", behind, clients)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	var bootstraps, applied, inXip, visible, dups, anomalies, rebootstrapped, subscribedBefore int
	for _, c := range cs {
		c.mu.Lock()
		bootstraps += c.bootstraps
		applied += c.applied
		inXip += c.appliedInXip
		visible += c.skippedVisible
		dups += c.skippedDup
		anomalies += len(c.anomalies)
		for _, a := range c.anomalies {
			t.Errorf("%s (%s): %s", c.name, c.channel, a)
		}
		if c.state != truth[c.channel] {
			t.Errorf("%s (%s): state %d, database %d (bootstraps %d, applied %d)", c.name, c.channel, c.state, truth[c.channel], c.bootstraps, c.applied)
		}
		if len(c.bootTimes) > 0 && c.bootTimes[0].Before(cfRestartAt) {
			subscribedBefore++
			if c.bootTimes[len(c.bootTimes)-1].After(cfRestartAt) {
				rebootstrapped++
			}
		}
		c.mu.Unlock()
	}
	inversions := idInversions(t, e)
	t.Logf("figures: channels %d, clients %d, events %d (held open %d, early id %d), id/commit-order inversions in Kafka %d, "+
		"bootstraps %d (clients bootstrapped before the Centrifugo restart %d, of which bootstrapped again after it %d), "+
		"relay restarts 1, Centrifugo restarts 1, applied %d (of them in the snapshot's in-progress list %d), skipped as visible %d, "+
		"skipped as duplicates %d, anomalies %d",
		channels, clients, events.Load(), held.Load(), earlyIDs.Load(), inversions, bootstraps, subscribedBefore, rebootstrapped,
		applied, inXip, visible, dups, anomalies)
	if inXip == 0 {
		t.Error("no client applied an event of a transaction in progress at its bootstrap: the hard case was not exercised")
	}
	if inversions == 0 {
		t.Error("no lower outbox id committed after a higher one: the hard case was not exercised")
	}
	if subscribedBefore == 0 || rebootstrapped != subscribedBefore {
		t.Errorf("%d clients were subscribed before the Centrifugo restart, %d bootstrapped again after it; want all, and some", subscribedBefore, rebootstrapped)
	}
}

// idInversions counts, per channel in the topic, records whose outbox id is lower than that of
// a record before them (in commit order): each is a transaction with a lower id that committed
// after one with a higher id, the case MAX(sequence_id) as a resume token gets wrong.
func idInversions(t *testing.T, e harness.Outbox) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recs, err := harness.ReadTopic(ctx, e.Brokers, e.Name)
	if err != nil {
		t.Fatal(err)
	}
	maxID := map[string]int64{}
	n := 0
	for _, r := range recs {
		id, err := strconv.ParseInt(r.Headers["pgoutbox-id"], 10, 64)
		if err != nil {
			t.Fatalf("record at offset %d: pgoutbox-id %q", r.Offset, r.Headers["pgoutbox-id"])
		}
		if id < maxID[r.Key] {
			n++
		}
		maxID[r.Key] = max(maxID[r.Key], id)
	}
	return n
}
