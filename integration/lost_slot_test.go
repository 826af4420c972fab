//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/jackc/pgx/v5"

	"github.com/pgoutbox/pgoutbox/checkpoint"
	"github.com/pgoutbox/pgoutbox/integration/harness"
	pgrecord "github.com/pgoutbox/pgoutbox/record"
)

// TestSlotLost: on a private cluster with a tiny max_slot_wal_keep_size, the relay is stalled
// (SIGSTOP) while 4 writers commit rows on 4 channels and the database writes far more WAL than
// the slot may keep, until a checkpoint invalidates the slot. `pgoutbox status` then exits 3,
// and the relay, resumed, stops with an error saying the slot was invalidated, from which
// position events may be missing and to run `pgoutbox recover` — and exits non-zero instead of
// streaming on past a gap; started again it refuses. The test follows the advice: `pgoutbox
// recover` (a dry run that changes nothing), `pgoutbox recover --apply` (a new slot; the rows
// Kafka lacks republished from the table; re-sync records), a second `--apply` that finds
// nothing, the relay again, rows written after. Every row ever inserted must be in Kafka exactly
// once, each channel in commit order, each channel told to re-sync after its republished rows.
// Once with track_commit_timestamp = on and --retention=delete-after-publish (and Centrifugo
// subscribers), once with neither, and once with the relay streaming while its (private) Kafka
// broker is down, instead of stalled.
func TestSlotLost(t *testing.T) {
	for _, tc := range lostCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testSlotLost(t, pgTarget{}, tc)
		})
	}
}

type lostCase struct {
	name             string
	commitTimestamps bool
	retention        string
	clients          bool // subscribers through Centrifugo that re-sync on the control record
	kafkaDown        bool // a private broker, stopped while the slot is lost, instead of stalling the relay
}

var lostCases = []lostCase{
	// Names without commas: the private cluster's socket directory is named after the test.
	{"commit timestamps and delete after publish with clients", true, "delete-after-publish", true, false},
	{"no commit timestamps and retention none", false, "none", false, false},
	{"kafka down until the slot is lost", true, "none", false, true},
}

func testSlotLost(t *testing.T, target pgTarget, tc lostCase) {
	pg := target.private(t)
	pg.SetConf(t, "max_slot_wal_keep_size", "32MB")
	if tc.commitTimestamps {
		pg.SetConf(t, "track_commit_timestamp", "on")
	}
	var kafka *harness.PrivateKafka
	brokers := harness.NeedKafka(t)
	if tc.kafkaDown {
		kafka = harness.StartPrivateKafka(t)
		brokers = kafka.Brokers
	}
	e := harness.NewOutboxOn(t, harness.Services{DatabaseURL: pg.URL, Brokers: brokers}, 2)
	harness.ExecSQL(t, pg.URL, `CREATE TABLE filler (id bigserial PRIMARY KEY, v text)`)
	const writers = 4
	chans := make([]string, writers)
	ins := &inserted{ids: map[string]bool{}, outbox: e.Name, counters: e.Name + "_counters"}
	harness.ExecSQL(t, pg.URL, fmt.Sprintf(`CREATE TABLE %s (channel text PRIMARY KEY, value bigint NOT NULL)`, ins.counters))
	for w := range chans {
		chans[w] = fmt.Sprintf("outbox:%s_w%d", e.Name, w) // Centrifugo's namespace
		harness.ExecSQL(t, pg.URL, fmt.Sprintf(`INSERT INTO %s VALUES ($1, 0)`, ins.counters), chans[w])
	}
	env := []string{"PGOUTBOX_MONITOR_INTERVAL=300ms", "PGOUTBOX_RECONNECT_MAX=1s", "PGOUTBOX_LOG_LEVEL=info", "PGOUTBOX_RETENTION=" + tc.retention,
		"PGOUTBOX_SHUTDOWN_TIMEOUT=5s", "PGOUTBOX_KAFKA_BACKOFF_MAX=500ms"}

	relay := e.StartRelay(t, env...)
	relay.WaitLog("streaming started", 30*time.Second)
	ins.add(t, e, chans[0], 0)
	harness.WaitRecords(t, e.Brokers, e.Name, 1, 30*time.Second)
	var clients []*resyncClient
	if tc.clients {
		cf := harness.StartCentrifugo(t, e.Brokers, e.Name)
		for i := range 2 * writers { // two per channel
			c := &resyncClient{name: fmt.Sprintf("client%d", i), channel: chans[i%writers], cf: cf, db: pg.URL, table: ins.counters}
			c.start(t)
			clients = append(clients, c)
		}
		for _, c := range clients {
			c.waitBootstrapped(t, time.Minute)
		}
	}
	if code, out := e.StatusExit(t); code != 0 {
		t.Fatalf("pgoutbox status exit %d on a healthy slot:\n%s", code, out)
	}

	if tc.kafkaDown {
		kafka.Stop() // the relay streams on, and nothing it reads can be acknowledged
	} else if err := relay.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	confirmed := harness.SlotConfirmed(t, pg.URL, e.Name)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() { // channel w<w>, n counting up, every other transaction two rows
			defer wg.Done()
			conn := harness.Connect(t, e.DatabaseURL)
			for n := 1; ctx.Err() == nil; n += 2 {
				// Not cancelled mid-statement: every row that commits is counted.
				if !ins.txn(context.Background(), conn, chans[w], n, n%4 == 1) {
					t.Errorf("writer w%d stopped at n=%d", w, n)
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	su := pg.Superuser(t)
	var walStatus string
	for i := 0; walStatus != "lost"; i++ {
		if i == 10 {
			t.Fatalf("slot still %q after writing about 100 MB of WAL and checkpoints", walStatus)
		}
		harness.ExecSQL(t, pg.URL, `INSERT INTO filler (v) SELECT repeat('x', 1000) FROM generate_series(1, 10000)`)
		if _, err := su.Exec(ctx, `SELECT pg_switch_wal()`); err != nil {
			t.Fatal(err)
		}
		if _, err := su.Exec(ctx, `CHECKPOINT`); err != nil {
			t.Fatal(err)
		}
		if err := su.QueryRow(ctx, `SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1`, e.Name).Scan(&walStatus); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // rows committed after the loss, too
	cancel()
	wg.Wait()
	code, out := e.StatusExit(t)
	if code != 3 || !strings.Contains(out, "lost") || !strings.Contains(out, "pgoutbox recover") {
		t.Errorf("pgoutbox status exit %d on a lost slot, want 3 naming `pgoutbox recover`:\n%s", code, out)
	}

	if !tc.kafkaDown {
		if err := relay.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	if code := relay.WaitExit(time.Minute); code == 0 {
		t.Fatal("relay exited 0 on a lost slot")
	}
	if tc.kafkaDown {
		kafka.Start()
	}
	log := lastLine(relay.Log.String())
	for _, want := range []string{"invalidated", "may be missing", "pgoutbox recover --apply"} {
		if !strings.Contains(log, want) {
			t.Errorf("the relay's error does not say %q:\n%s", want, relay.Log.Tail(4))
		}
	}
	if strings.Contains(log, "pg_drop_replication_slot") {
		t.Errorf("the relay's advice ends in hand-written SQL:\n%s", log)
	}
	// The position it names may be the relay's own (everything before it is in Kafka), which
	// can be ahead of what the slot had been told; it is never before the slot's.
	if m := regexp.MustCompile(`committed after ([0-9A-F]+/[0-9A-F]+)`).FindStringSubmatch(log); m == nil || harness.MustLSN(t, m[1]) < confirmed {
		t.Errorf("the relay's error does not name a position at or after the slot's confirmed %s:\n%s", confirmed, relay.Log.Tail(4))
	}
	if !strings.Contains(relay.Log.String(), "lost slot recorded") {
		t.Errorf("the relay did not record the lost slot:\n%s", relay.Log.Tail(6))
	}

	// Started again without recover, as a supervisor would: it refuses.
	again := e.StartRelay(t, env...)
	if code := again.WaitExit(time.Minute); code == 0 || !strings.Contains(again.Log.String(), "pgoutbox recover --apply") ||
		strings.Contains(again.Log.String(), "streaming started") {
		t.Fatalf("a start without recover exited %d, want non-zero naming `pgoutbox recover --apply`:\n%s", code, again.Log.Tail(4))
	}
	t.Logf("the relay stopped with: %s\nstarted again: %s", log, lastLine(again.Log.String()))

	before, err := harness.ReadTopic(context.Background(), e.Brokers, e.Name)
	if err != nil {
		t.Fatal(err)
	}
	code, dry := runWith(t, e, env, "recover")
	if code != 0 || !strings.Contains(dry, "dry run") || !strings.Contains(dry, "to publish") {
		t.Fatalf("pgoutbox recover (dry run) exit %d:\n%s", code, dry)
	}
	wantOrder := "order: by id within each channel"
	if tc.commitTimestamps {
		wantOrder = "order: by commit time"
	}
	if !strings.Contains(dry, wantOrder) {
		t.Errorf("the dry run does not say %q:\n%s", wantOrder, dry)
	}
	if recs, err := harness.ReadTopic(context.Background(), e.Brokers, e.Name); err != nil || len(recs) != len(before) {
		t.Fatalf("the dry run changed the topic: %d records, was %d (%v)", len(recs), len(before), err)
	}
	if err := su.QueryRow(context.Background(), `SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1`, e.Name).Scan(&walStatus); err != nil || walStatus != "lost" {
		t.Fatalf("the dry run changed the slot: wal_status %q (%v)", walStatus, err)
	}

	code, applied := runWith(t, e, env, "recover", "--apply")
	if code != 0 || !strings.Contains(applied, "the loss is closed") {
		t.Fatalf("pgoutbox recover --apply exit %d:\n%s", code, applied)
	}
	code, second := runWith(t, e, env, "recover", "--apply")
	if code != 0 || !strings.Contains(second, "nothing to recover") {
		t.Fatalf("second pgoutbox recover --apply exit %d, want nothing to recover:\n%s", code, second)
	}
	afterRecover, err := harness.ReadTopic(context.Background(), e.Brokers, e.Name)
	if err != nil {
		t.Fatal(err)
	}
	if code, out := e.StatusExit(t); code != 0 {
		t.Errorf("pgoutbox status exit %d after recovery, want 0:\n%s", code, out)
	}

	relay = e.StartRelay(t, env...)
	relay.WaitLog("streaming started", time.Minute)
	conn := harness.Connect(t, e.DatabaseURL)
	for w := range writers { // after the recovery, streamed by the new slot
		ins.txn(context.Background(), conn, chans[w], 1_000_000, true)
	}
	recs := waitEvents(t, e, ins.count(), time.Minute)
	relay.Stop(30 * time.Second)

	xmins := map[string]uint64{}
	rows, err := conn.Query(context.Background(), fmt.Sprintf(`SELECT sequence_id::text, xmin::text::bigint FROM %s`, e.Name))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var xmin uint64
		if err := rows.Scan(&id, &xmin); err != nil {
			t.Fatal(err)
		}
		xmins[id] = xmin
	}
	rows.Close()

	seen := map[string]int{}
	dups, republished, outOfOrder := 0, 0, 0
	lastPos, lastN := map[string]string{}, map[string]int{}
	resynced := map[string]bool{}
	republishedAfterResync, leftAfterRecover := 0, 0
	for _, r := range recs {
		ch := r.Headers["pgoutbox-channel"]
		if r.Headers["pgoutbox-control"] == "resync" {
			resynced[ch] = true
			continue
		}
		if r.Headers["pgoutbox-control"] != "" {
			continue
		}
		id := r.Headers["pgoutbox-id"]
		if seen[id]++; seen[id] > 1 {
			dups++
		}
		if r.Headers["pgoutbox-republished"] == "table" {
			republished++
			if _, left := xmins[id]; left && tc.retention == "delete-after-publish" {
				leftAfterRecover++
			}
			if resynced[ch] {
				republishedAfterResync++
			}
			xid, _ := strconv.ParseUint(r.Headers["pgoutbox-xid"], 10, 64)
			if xmin, ok := xmins[id]; ok && xid&0xFFFFFFFF != xmin {
				t.Errorf("row %s: pgoutbox-xid %d, but the row's xmin is %d", id, xid, xmin)
			}
		}
		n := dataN(t, r.Value)
		if p := r.Headers["pgoutbox-position"]; p <= lastPos[r.Key] || n < lastN[r.Key] {
			outOfOrder++
		}
		lastPos[r.Key], lastN[r.Key] = r.Headers["pgoutbox-position"], n
	}
	missing := 0
	for id := range ins.ids {
		if seen[id] == 0 {
			missing++
		}
	}
	t.Logf("%d rows inserted by %d writers (%d still in the table); %d records in Kafka before recover, %d after it; recover republished %d; "+
		"re-sync records for %d channels; after the restart: %d missing, %d duplicates, %d out of order within a channel",
		ins.count(), writers, len(xmins), countEvents(before), countEvents(afterRecover), republished, len(resynced), missing, dups, outOfOrder)
	t.Logf("recover (dry run) said:\n%s", dry)
	t.Logf("recover --apply said:\n%s", applied)
	if missing != 0 || dups != 0 || outOfOrder != 0 {
		t.Errorf("%d rows missing, %d duplicated, %d out of order within their channel", missing, dups, outOfOrder)
	}
	if republished == 0 {
		t.Error("recover republished nothing: the writers committed nothing while the slot was lost")
	}
	for _, ch := range chans {
		if !resynced[ch] {
			t.Errorf("channel %s got no re-sync record", ch)
		}
	}
	if republishedAfterResync != 0 {
		t.Errorf("%d republished records come after their channel's re-sync record", republishedAfterResync)
	}
	if leftAfterRecover != 0 {
		t.Errorf("%d republished rows left in the table with --retention=delete-after-publish", leftAfterRecover)
	}
	checkClientsConverged(t, clients, pg.URL, ins.counters)
}

// checkClientsConverged waits until every client's state equals its channel's counter in the
// database, and checks that each re-synced on the control record and applied nothing out of
// order.
func checkClientsConverged(t *testing.T, clients []*resyncClient, db, counters string) {
	t.Helper()
	if len(clients) == 0 {
		return
	}
	want := map[string]int64{}
	rows, err := harness.Connect(t, db).Query(context.Background(), fmt.Sprintf(`SELECT channel, value FROM %s`, counters))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var ch string
		var v int64
		if err := rows.Scan(&ch, &v); err != nil {
			t.Fatal(err)
		}
		want[ch] = v
	}
	rows.Close()
	deadline := time.Now().Add(time.Minute)
	for _, c := range clients {
		for c.snapshot().state != want[c.channel] && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		st := c.snapshot()
		t.Logf("%s on %s: state %d (database %d), %d bootstraps, %d re-syncs, %d events applied, %d republished among them",
			c.name, c.channel, st.state, want[c.channel], st.bootstraps, st.resyncs, st.applied, st.republished)
		if st.state != want[c.channel] || st.resyncs == 0 || st.republished == 0 || len(st.anomalies) > 0 {
			t.Errorf("%s: state %d, database %d; %d re-syncs, %d republished events applied (want both > 0); anomalies: %v",
				c.name, st.state, want[c.channel], st.resyncs, st.republished, st.anomalies)
		}
	}
}

// inserted remembers the ids of the outbox rows a test inserted. Each transaction adds its
// rows to the channel's counter, and each row carries the counter's value after it (v) and the
// writer's sequence number (n).
type inserted struct {
	outbox, counters string
	mu               sync.Mutex
	ids              map[string]bool
}

// add inserts one row on channel with n in its data.
func (i *inserted) add(t *testing.T, e harness.Outbox, channel string, n int) {
	t.Helper()
	if !i.txn(context.Background(), harness.Connect(t, e.DatabaseURL), channel, n, false) {
		t.Fatal("insert failed")
	}
}

// txn commits one transaction of one row ({"n": n}) or two (n, n+1) on channel, and reports
// whether it committed.
func (i *inserted) txn(ctx context.Context, conn *pgx.Conn, channel string, n int, two bool) bool {
	k := 1
	if two {
		k = 2
	}
	rows, err := conn.Query(ctx, fmt.Sprintf(`WITH c AS (UPDATE %s SET value = value + $3 WHERE channel = $1 RETURNING value)
		INSERT INTO %s (channel, name, data)
		SELECT $1, 'lost', jsonb_build_object('n', $2::int + k, 'v', c.value - $3 + 1 + k) FROM c, generate_series(0, $3 - 1) k ORDER BY k
		RETURNING sequence_id::text`, i.counters, i.outbox), channel, n, k)
	if err != nil {
		return false
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return false
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, id := range ids {
		i.ids[id] = true
	}
	return true
}

func (i *inserted) count() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return len(i.ids)
}

// dataN is the n of a record's {"n": …} value.
func dataN(t *testing.T, value []byte) int {
	var v struct{ N int }
	if err := json.Unmarshal(value, &v); err != nil {
		t.Fatalf("record value %q: %v", value, err)
	}
	return v.N
}

// runWith runs one command of the relay binary with the relay's environment and extra env (the
// operator runs recover with the relay's configuration), and returns its exit status and output.
func runWith(t *testing.T, e harness.Outbox, env []string, args ...string) (int, string) {
	t.Helper()
	out, err := e.PgoutboxWith(t, env, args...)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out
	case errors.As(err, &exit):
		return exit.ExitCode(), out
	}
	t.Fatalf("pgoutbox %v: %v\n%s", args, err, out)
	return 0, ""
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// resyncClient is a subscriber of one channel through Centrifugo that bootstraps with the recipe
// of docs/fan-out.md (stream position, then the state in one REPEATABLE READ snapshot), applies
// events with the checkpoint rules, and bootstraps again — the re-sync — when a control record
// `pgoutbox-control: resync` arrives: events published by Centrifugo at or before the stream
// position read then are in the state it reads.
type resyncClient struct {
	name, channel string
	cf            *harness.Centrifugo
	db, table     string

	mu sync.Mutex
	clientState
	snap      checkpoint.Snapshot
	cursors   checkpoint.Cursors
	minOffset uint64 // events at or before it are in the bootstrapped state
}

// clientState is what the test reads of a client.
type clientState struct {
	state                                     int64
	bootstraps, resyncs, applied, republished int
	anomalies                                 []string
}

func (c *resyncClient) snapshot() clientState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.clientState
	st.anomalies = append([]string(nil), c.anomalies...)
	return st
}

// bootstrap reads the channel's stream position, then its state in a snapshot; the caller
// holds c.mu.
func (c *resyncClient) bootstrap() (centrifuge.StreamPosition, error) {
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
	c.state, c.snap, c.cursors, c.minOffset = value, snap, checkpoint.Cursors{}, top.Offset
	c.bootstraps++
	return centrifuge.StreamPosition{Offset: top.Offset, Epoch: top.Epoch}, nil
}

func (c *resyncClient) getState(centrifuge.SubscriptionGetStateEvent) (centrifuge.StreamPosition, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bootstrap()
}

func (c *resyncClient) onPublication(ev centrifuge.PublicationEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev.Tags["control"] == "resync" {
		c.resyncs++
		if _, err := c.bootstrap(); err != nil {
			c.anomalies = append(c.anomalies, "re-sync: "+err.Error())
		}
		return
	}
	if ev.Offset <= c.minOffset {
		return
	}
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
	if c.snap.Visible(xid) || !c.cursors.Apply(c.channel, pos) {
		return
	}
	var data struct{ V int64 }
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		c.anomalies = append(c.anomalies, fmt.Sprintf("data %s: %v", ev.Data, err))
		return
	}
	if data.V != c.state+1 {
		c.anomalies = append(c.anomalies, fmt.Sprintf("applied value %d (xid %d, position %v, offset %d) on state %d", data.V, xid, pos, ev.Offset, c.state))
	}
	c.state = data.V
	c.applied++
	if ev.Tags["republished"] == "table" {
		c.republished++
	}
}

func (c *resyncClient) start(t *testing.T) {
	client := centrifuge.NewJsonClient(c.cf.WSURL(), centrifuge.Config{Token: c.cf.Token(c.name), HandshakeTimeout: harness.ClientHandshakeTimeout})
	t.Cleanup(client.Close)
	sub, err := client.NewSubscription(c.channel, centrifuge.SubscriptionConfig{
		Positioned: true, Recoverable: true, GetState: c.getState,
		Token: c.cf.SubToken(c.name, c.channel),
		GetToken: func(centrifuge.SubscriptionTokenEvent) (string, error) {
			return c.cf.SubToken(c.name, c.channel), nil
		},
	})
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	sub.OnPublication(c.onPublication)
	if err := sub.Subscribe(); err != nil {
		t.Fatalf("%s: subscribe: %v", c.name, err)
	}
	if err := client.Connect(); err != nil {
		t.Logf("%s: first connect attempt failed, the SDK retries: %v", c.name, err)
	}
}

func (c *resyncClient) waitBootstrapped(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for c.snapshot().bootstraps == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not bootstrap in %s", c.name, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSlotLost_WALOnly: a WAL-only outbox (--events-from=messages) loses its slot (dropped under
// the relay) while events are sent: nothing can be republished — the WAL was their only copy —
// and recover says so, creates the slot again and tells the stream's channels to re-sync; the
// relay then streams the events sent after it.
func TestSlotLost_WALOnly(t *testing.T) {
	t.Parallel()
	m := newMsgOutbox(t, 1, "PGOUTBOX_EVENTS_FROM=messages", "PGOUTBOX_LOG_LEVEL=info")
	send := func(n int) {
		harness.ExecSQL(t, m.DatabaseURL, fmt.Sprintf(`SELECT %s.pgoutbox_send('ch', 'e', jsonb_build_object('n', %d))`, m.Name, n))
	}
	relay := m.start(t)
	relay.WaitLog("streaming started", time.Minute)
	send(1)
	harness.WaitRecords(t, m.Brokers, m.Name, 1, time.Minute)
	if err := relay.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	harness.ExecSQL(t, m.DatabaseURL, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1`, m.Name)
	harness.WaitSlotInactive(t, m.DatabaseURL, m.Name, 30*time.Second)
	harness.ExecSQL(t, m.DatabaseURL, `SELECT pg_drop_replication_slot($1)`, m.Name)
	if err := relay.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if code := relay.WaitExit(time.Minute); code == 0 {
		t.Fatal("relay exited 0 after its slot was dropped")
	}
	send(2) // no slot: these two are lost for good
	send(3)

	dry, err := m.run(t, "recover")
	if err != nil || !strings.Contains(dry, "cannot be republished") || !strings.Contains(dry, "nothing to republish (WAL-only outbox)") {
		t.Fatalf("pgoutbox recover (dry run): %v\n%s", err, dry)
	}
	applied, err := m.run(t, "recover", "--apply")
	if err != nil || !strings.Contains(applied, "published no events") || !strings.Contains(applied, "re-sync control record on each of 1 channels") {
		t.Fatalf("pgoutbox recover --apply: %v\n%s", err, applied)
	}
	relay = m.start(t)
	relay.WaitLog("streaming started", time.Minute)
	send(4)
	recs := waitEvents(t, m.Outbox, 2, time.Minute)
	relay.Stop(30 * time.Second)
	var got []string
	for _, r := range recs {
		switch r.Headers["pgoutbox-control"] {
		case "":
			got = append(got, fmt.Sprint(dataN(t, r.Value)))
		case "resync":
			got = append(got, "resync:"+r.Headers["pgoutbox-channel"])
		}
	}
	if want := "[1 resync:ch 4]"; fmt.Sprint(got) != want {
		t.Errorf("records %v, want %s", got, want)
	}
	t.Logf("recover --apply of a WAL-only outbox:\n%s", applied)
}

// TestSetup_AddsGapKind: a gap table created before the kind column (which records a lost slot)
// gets it from `pgoutbox setup`, run as its owner; the stretches it holds stay publication
// stretches.
func TestSetup_AddsGapKind(t *testing.T) {
	t.Parallel()
	e := harness.Outbox{Services: harness.NeedServices(t), Name: harness.UniqueName(t)}
	harness.ExecSQL(t, e.DatabaseURL, "CREATE SCHEMA "+e.Name)
	harness.DropSlotAtCleanup(t, e.DatabaseURL, e.Name)
	t.Cleanup(func() {
		harness.ExecInCleanup(t, e.DatabaseURL, "DROP PUBLICATION IF EXISTS "+e.Name)
		harness.ExecInCleanup(t, e.DatabaseURL, "DROP PUBLICATION IF EXISTS "+e.Name+"_recovery")
		harness.ExecInCleanup(t, e.DatabaseURL, "DROP SCHEMA "+e.Name+" CASCADE")
	})
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`CREATE TABLE %s.pgoutbox_gap (slot text NOT NULL, from_lsn pg_lsn NOT NULL, to_lsn pg_lsn NOT NULL,
		detected_at timestamptz NOT NULL DEFAULT now(), reason text NOT NULL, dropped boolean NOT NULL DEFAULT false, covered_lsn pg_lsn,
		resolution text, resolved_at timestamptz, published bigint, PRIMARY KEY (slot, from_lsn))`, e.Name))
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s.pgoutbox_gap (slot, from_lsn, to_lsn, reason) VALUES ('old', '0/1', '0/2', 'old stretch')`, e.Name))
	env := []string{"PGOUTBOX_TABLE=" + e.Name + ".outbox", "PGOUTBOX_MESSAGE_PREFIX=" + e.Name}
	if code, out := runWith(t, e, env, "setup"); code != 0 {
		t.Fatalf("pgoutbox setup exit %d:\n%s", code, out)
	}
	var kind string
	if err := harness.QueryRow(context.Background(), e.DatabaseURL, fmt.Sprintf(`SELECT kind FROM %s.pgoutbox_gap WHERE slot = 'old'`, e.Name), nil, &kind); err != nil || kind != "publication" {
		t.Errorf("kind of the old stretch after setup: %q (%v), want publication", kind, err)
	}
}
