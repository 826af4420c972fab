//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/jackc/pgx/v5"
	"github.com/pgoutbox/pgoutbox/capture"
)

// The WAL-only outbox (issue 16): events sent with pgoutbox_send(), i.e.
// pg_logical_emit_message(true, prefix, …), delivered with every guarantee of table rows.
//
// Each test has its own schema (the functions live in the outbox table's schema, under fixed
// names) and its own message prefix: every relay with --events-from=both, also other tests',
// sees every message of the database, and publishes those with its prefix.

// msgOutbox is a test's WAL-only outbox: schema <Name> holding the table outbox and the
// functions, prefix <Name>, and the publication, slot and topic named <Name>.
type msgOutbox struct {
	harness.Outbox
	extra []string // PGOUTBOX_* settings of every command
}

func (m msgOutbox) table() string { return m.Name + ".outbox" }

// newMsgOutbox runs `pgoutbox setup` for a WAL-only outbox with these extra settings and
// removes everything at the end of the test.
func newMsgOutbox(t *testing.T, partitions int, extra ...string) msgOutbox {
	t.Helper()
	return newMsgOutboxOn(t, harness.NeedServices(t), partitions, extra...)
}

// newMsgOutboxOn is newMsgOutbox on the given services (e.g. a matrix version's server).
func newMsgOutboxOn(t *testing.T, svc harness.Services, partitions int, extra ...string) msgOutbox {
	t.Helper()
	m := msgOutbox{Outbox: harness.Outbox{Services: svc, Name: harness.UniqueName(t)}}
	m.extra = append([]string{"PGOUTBOX_TABLE=" + m.table(), "PGOUTBOX_MESSAGE_PREFIX=" + m.Name}, extra...)
	harness.ExecSQL(t, m.DatabaseURL, "CREATE SCHEMA "+m.Name)
	harness.DropSlotAtCleanup(t, m.DatabaseURL, m.Name)
	t.Cleanup(func() {
		harness.ExecInCleanup(t, m.DatabaseURL, "DROP PUBLICATION IF EXISTS "+m.Name)
		harness.ExecInCleanup(t, m.DatabaseURL, "DROP SCHEMA IF EXISTS "+m.Name+" CASCADE")
		harness.DeleteTopicQuietly(m.Brokers, m.Name)
		harness.DeleteTopicQuietly(m.Brokers, m.Name+".dlq")
	})
	if out, err := m.run(t, "setup", "--partitions", strconv.Itoa(partitions)); err != nil {
		t.Fatalf("pgoutbox setup: %v\n%s", err, out)
	}
	return m
}

func (m msgOutbox) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := m.PgoutboxWith(t, m.extra, args...)
	harness.CheckLogLines(t, "pgoutbox "+strings.Join(args, " "), out)
	return out, err
}

func (m msgOutbox) start(t *testing.T, extra ...string) *harness.Relay {
	t.Helper()
	return m.StartRelay(t, append(slices.Clone(m.extra), extra...)...)
}

// msgPayload is the payload of a test event: via says whether it was sent with pgoutbox_send
// ("message") or an INSERT ("table").
type msgPayload struct {
	Channel    string `json:"channel"`
	Counter    int64  `json:"counter"`
	Via        string `json:"via"`
	RolledBack bool   `json:"rolled_back"`
}

// msgWorkload: writers commit transactions of 1..maxTxn events over channels, each event sent
// by pgoutbox_send (messageShare of them) or inserted into the table, mixed in one transaction;
// one transaction in ten rolls back.
type msgWorkload struct {
	writers, events, channels, maxTxn int
	messageShare                      float64
}

// committedEvents is what the writers committed: channel → counters, and each event's via.
type committedEvents struct {
	mu   sync.Mutex
	rows map[string][]int64
	via  map[string]string // channel#counter → via
	n    int
}

func runMsgWorkload(t *testing.T, m msgOutbox, w msgWorkload) *committedEvents {
	t.Helper()
	harness.ExecSQL(t, m.DatabaseURL, fmt.Sprintf(`CREATE TABLE %s.counters (channel text PRIMARY KEY, n bigint NOT NULL DEFAULT 0)`, m.Name))
	harness.ExecSQL(t, m.DatabaseURL, fmt.Sprintf(`INSERT INTO %s.counters SELECT 'ch-' || g FROM generate_series(0, $1::int - 1) g`, m.Name), w.channels)
	got := &committedEvents{rows: map[string][]int64{}, via: map[string]string{}}
	var wg sync.WaitGroup
	errs := make(chan error, w.writers)
	for i := range w.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- msgWriter(m, w, i, harness.WriterQuota(w.events, w.writers, i), got)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	}
	return got
}

func msgWriter(m msgOutbox, w msgWorkload, id, quota int, got *committedEvents) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, m.DatabaseURL)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }()
	rng := rand.New(rand.NewPCG(uint64(id), 16))
	bump := fmt.Sprintf(`UPDATE %s.counters SET n = n + 1 WHERE channel = $1 RETURNING n`, m.Name)
	insert := fmt.Sprintf(`INSERT INTO %s.outbox (channel, name, data) VALUES ($1, 'test.event', $2)`, m.Name)
	send := fmt.Sprintf(`SELECT %s.pgoutbox_send($1, 'test.event', $2::jsonb)`, m.Name)
	for quota > 0 {
		rollback := rng.IntN(10) == 0
		n := 1 + rng.IntN(w.maxTxn)
		if !rollback {
			n = min(n, quota)
		}
		chans := make([]string, n)
		for i := range chans {
			chans[i] = fmt.Sprintf("ch-%d", rng.IntN(w.channels))
		}
		slices.Sort(chans) // one lock order: no deadlocks between writers
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		var rows []msgPayload
		for _, ch := range chans {
			p := msgPayload{Channel: ch, Via: "table", RolledBack: rollback}
			if rng.Float64() < w.messageShare {
				p.Via = "message"
			}
			if err := tx.QueryRow(ctx, bump, ch).Scan(&p.Counter); err != nil {
				return err
			}
			data, _ := json.Marshal(p)
			stmt := insert
			if p.Via == "message" {
				stmt = send
			}
			if _, err := tx.Exec(ctx, stmt, ch, string(data)); err != nil {
				return err
			}
			rows = append(rows, p)
		}
		if rollback {
			if err := tx.Rollback(ctx); err != nil {
				return err
			}
			continue
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		got.mu.Lock()
		for _, p := range rows {
			got.rows[p.Channel] = append(got.rows[p.Channel], p.Counter)
			got.via[fmt.Sprintf("%s#%d", p.Channel, p.Counter)] = p.Via
			got.n++
		}
		got.mu.Unlock()
		quota -= n
	}
	return nil
}

// checkMsgDelivery checks the topic against what was committed: every committed event once
// (duplicates are counted and returned), nothing rolled back, each channel in commit order, the
// pgoutbox-id header set for table rows only, and in each transaction the indexes 0..n-1 over
// rows and messages together.
func checkMsgDelivery(t *testing.T, recs []harness.Record, want *committedEvents, partitions int) (duplicates int) {
	t.Helper()
	seen := map[string]bool{}
	order := newChannelOrder()
	indexes := map[string][]int{} // commit LSN → indexes
	for _, r := range recs {
		var p msgPayload
		if err := json.Unmarshal(r.Value, &p); err != nil {
			t.Fatalf("record %d/%d: bad payload %q: %v", r.Partition, r.Offset, r.Value, err)
		}
		if p.RolledBack {
			t.Errorf("record %d/%d comes from a rolled-back transaction: %s", r.Partition, r.Offset, r.Value)
		}
		if r.Key != p.Channel || r.Headers["pgoutbox-channel"] != p.Channel || r.Headers["pgoutbox-name"] != "test.event" {
			t.Errorf("record %d/%d: key %q, headers %v, want channel %q", r.Partition, r.Offset, r.Key, r.Headers, p.Channel)
		}
		checkPartition(t, r, partitions)
		if id := r.Headers["pgoutbox-id"]; (id == "") != (p.Via == "message") {
			t.Errorf("record %d/%d sent via %s has pgoutbox-id %q", r.Partition, r.Offset, p.Via, id)
		}
		key := fmt.Sprintf("%s#%d", p.Channel, p.Counter)
		if seen[key] {
			duplicates++
			continue
		}
		seen[key] = true
		if via := want.via[key]; via != p.Via {
			t.Errorf("record %s arrived via %q, committed via %q", key, p.Via, via)
		}
		order.check(t, p.Channel, p.Counter, r.Headers["pgoutbox-position"])
		idx, err := strconv.Atoi(r.Headers["pgoutbox-commit-index"])
		if err != nil {
			t.Fatalf("record %s: commit index %q", key, r.Headers["pgoutbox-commit-index"])
		}
		indexes[r.Headers["pgoutbox-commit-lsn"]] = append(indexes[r.Headers["pgoutbox-commit-lsn"]], idx)
	}
	for lsn, idx := range indexes {
		slices.Sort(idx)
		for i, v := range idx {
			if v != i {
				t.Errorf("transaction %s: indexes %v, want 0..%d (rows and messages numbered together)", lsn, idx, len(idx)-1)
				break
			}
		}
	}
	checkNoneMissing(t, want.rows, "event", func(ch string, c int64) bool {
		return seen[fmt.Sprintf("%s#%d", ch, c)]
	})
	if len(seen) != want.n {
		t.Errorf("%d distinct events in Kafka, %d committed", len(seen), want.n)
	}
	return duplicates
}

// TestMessages_CompletenessAndOrder: 6 concurrent writers commit 6,000 events over 60
// channels while the relay streams with the default --events-from=both, each transaction
// mixing pgoutbox_send() calls and outbox inserts; every committed event arrives once, none
// of a rolled-back transaction, each channel in commit order.
func TestMessages_CompletenessAndOrder(t *testing.T) {
	t.Parallel()
	testMessagesCompleteness(t, pgTarget{})
}

func testMessagesCompleteness(t *testing.T, pg pgTarget) {
	const partitions = 3
	m := newMsgOutboxOn(t, pg.services(t), partitions)
	relay := m.start(t)
	relay.WaitLog("streaming started", 30*time.Second)
	committed := runMsgWorkload(t, m, msgWorkload{writers: 6, events: 6000, channels: 60, maxTxn: 6, messageShare: 0.5})
	harness.WaitConfirmedPast(t, m.Outbox, harness.CurrentWAL(t, m.DatabaseURL), 2*time.Minute)
	recs := harness.WaitRecords(t, m.Brokers, m.Name, committed.n, time.Minute)
	relay.Stop(30 * time.Second)
	dups := checkMsgDelivery(t, recs, committed, partitions)
	if dups != 0 {
		t.Errorf("%d duplicates without any crash", dups)
	}
	messages := 0
	for _, v := range committed.via {
		if v == "message" {
			messages++
		}
	}
	t.Logf("events committed %d (%d via pgoutbox_send), records %d, duplicates %d", committed.n, messages, len(recs), dups)
}

// TestMessages_CrashMidStream: messages only (--events-from=messages), the relay SIGKILLed
// three times while writers commit; no committed event is missing, and with exactly-once
// (the default) none is duplicated either.
func TestMessages_CrashMidStream(t *testing.T) {
	t.Parallel()
	const partitions = 3
	m := newMsgOutbox(t, partitions, "PGOUTBOX_EVENTS_FROM=messages")
	done := make(chan *committedEvents)
	go func() {
		done <- runMsgWorkload(t, m, msgWorkload{writers: 4, events: 12_000, channels: 40, maxTxn: 8, messageShare: 1})
	}()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 16))
	var kills []killPoint
	relay := m.start(t)
	relay.WaitLog("streaming started", 30*time.Second)
	for range 3 {
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
		relay.Kill()
		kills = append(kills, killPoint{confirmed: harness.SlotConfirmed(t, m.DatabaseURL, m.Name), ends: harness.EndOffsets(t, m.Outbox, partitions)})
		relay = m.start(t)
		relay.WaitLog("streaming started", 30*time.Second)
	}
	committed := <-done
	harness.WaitConfirmedPast(t, m.Outbox, harness.CurrentWAL(t, m.DatabaseURL), 2*time.Minute)
	recs := harness.WaitRecords(t, m.Brokers, m.Name, committed.n, time.Minute)
	relay.Stop(30 * time.Second)
	dups := checkMsgDelivery(t, recs, committed, partitions)
	checkDuplicatesUnconfirmed(t, recs, kills)
	if dups != 0 {
		t.Errorf("%d duplicates with exactly-once on", dups)
	}
	t.Logf("events committed %d, records %d, duplicates %d after %d kills (confirmed at kills: %v)",
		committed.n, len(recs), dups, len(kills), confirmedList(kills))
}

// queryText runs a query returning one text value, on a short-lived connection.
func queryText(t *testing.T, url, sql string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var s string
	if err := harness.QueryRow(ctx, url, sql, args, &s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// TestMessages_BadRows: a non-transactional message with our prefix — also one emitted in a
// transaction that rolled back — is never published: with --on-bad-row=stop the relay halts
// on it, having published what came before and confirmed nothing past it; with dead-letter it
// lands on the dead-letter topic with the reason, at the message's LSN, like a message whose
// content is not an event; the good events around them arrive in order. With
// --events-from=messages an insert into the table is a bad row too.
func TestMessages_BadRows(t *testing.T) {
	t.Parallel()
	m := newMsgOutbox(t, 1)
	if out, err := m.run(t, "setup", "--partitions", "1", "--on-bad-row", "dead-letter"); err != nil {
		t.Fatalf("setup of the dead-letter topic: %v\n%s", err, out)
	}
	send := func(name string) {
		t.Helper()
		harness.ExecSQL(t, m.DatabaseURL, fmt.Sprintf(`SELECT %s.pgoutbox_send('c', $1, jsonb_build_object('n', $1::text))`, m.Name), name)
	}
	outside := func(content string) string {
		t.Helper()
		return queryText(t, m.DatabaseURL, `SELECT pg_logical_emit_message(false, $1, $2::text)::text`, m.Name, content)
	}

	relay := m.start(t)
	relay.WaitLog("streaming started", 30*time.Second)
	send("good.1")
	harness.WaitRecords(t, m.Brokers, m.Name, 1, time.Minute)
	lsn1 := outside(`{"v": 1, "channel": "c", "name": "outside.1"}`)
	// Emitted inside a transaction that rolls back: PostgreSQL still decodes it.
	tx := harness.Connect(t, m.DatabaseURL)
	var lsn2 string
	if _, err := tx.Exec(context.Background(), "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(context.Background(), `SELECT pg_logical_emit_message(false, $1, '{"v": 1, "channel": "c", "name": "outside.2"}')::text`,
		m.Name).Scan(&lsn2); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	harness.ExecSQL(t, m.DatabaseURL, `SELECT pg_logical_emit_message(true, $1, 'not an event')`, m.Name)
	send("good.2")

	if code := relay.WaitExit(time.Minute); code == 0 {
		t.Fatal("relay exited 0 on a non-transactional message, want a failure")
	}
	if log := relay.Log.String(); !strings.Contains(log, "non-transactional") || !strings.Contains(log, lsn1) {
		t.Errorf("the relay's log does not name the non-transactional message at %s:\n%s", lsn1, relay.Log.Tail(20))
	}
	if confirmed := harness.SlotConfirmed(t, m.DatabaseURL, m.Name); confirmed >= harness.MustLSN(t, lsn1) {
		t.Errorf("slot confirmed %s, past the bad message at %s", confirmed, lsn1)
	}
	if recs := harness.WaitRecords(t, m.Brokers, m.Name, 1, time.Minute); len(recs) != 1 || recs[0].Headers["pgoutbox-name"] != "good.1" {
		t.Fatalf("topic holds %d records, want only good.1: %v", len(recs), recs)
	}

	relay = m.start(t, "PGOUTBOX_ON_BAD_ROW=dead-letter")
	dlq := harness.WaitRecords(t, m.Brokers, m.Name+".dlq", 3, time.Minute)
	recs := harness.WaitRecords(t, m.Brokers, m.Name, 2, time.Minute)
	if got := []string{recs[0].Headers["pgoutbox-name"], recs[1].Headers["pgoutbox-name"]}; len(recs) != 2 || got[0] != "good.1" || got[1] != "good.2" {
		t.Errorf("topic holds %d records %v, want good.1, good.2", len(recs), got)
	}
	for i, want := range []struct{ lsn, reason, value string }{
		{lsn1, "non-transactional", `"outside.1"`},
		{lsn2, "non-transactional", `"outside.2"`},
		{"", "not a pgoutbox event", "not an event"},
	} {
		r := dlq[i]
		if !strings.Contains(r.Headers["pgoutbox-error"], want.reason) || !strings.Contains(string(r.Value), want.value) {
			t.Errorf("dead letter %d: error %q, value %q; want %q and a value with %s", i, r.Headers["pgoutbox-error"], r.Value, want.reason, want.value)
		}
		if want.lsn != "" && (r.Headers["pgoutbox-commit-lsn"] != want.lsn || r.Headers["pgoutbox-commit-index"] != "0") {
			t.Errorf("dead letter %d at %s index %s, want the message's LSN %s index 0", i,
				r.Headers["pgoutbox-commit-lsn"], r.Headers["pgoutbox-commit-index"], want.lsn)
		}
	}
	harness.WaitConfirmedPast(t, m.Outbox, harness.CurrentWAL(t, m.DatabaseURL), time.Minute)
	relay.Stop(30 * time.Second)

	// Messages only: an insert into the table is refused, the messages around it go on.
	relay = m.start(t, "PGOUTBOX_ON_BAD_ROW=dead-letter", "PGOUTBOX_EVENTS_FROM=messages")
	relay.WaitLog("streaming started", 30*time.Second)
	harness.ExecSQL(t, m.DatabaseURL, fmt.Sprintf(`INSERT INTO %s.outbox (channel, name, data) VALUES ('c', 'inserted', '{}')`, m.Name))
	send("good.3")
	recs = harness.WaitRecords(t, m.Brokers, m.Name, 3, time.Minute)
	dlq = harness.WaitRecords(t, m.Brokers, m.Name+".dlq", 4, time.Minute)
	if recs[2].Headers["pgoutbox-name"] != "good.3" || dlq[3].Headers["pgoutbox-name"] != "inserted" ||
		!strings.Contains(dlq[3].Headers["pgoutbox-error"], "--events-from=messages") || dlq[3].Headers["pgoutbox-id"] == "" {
		t.Errorf("messages only: record %v, dead letter %v", recs[2].Headers, dlq[3].Headers)
	}
	relay.Stop(30 * time.Second)
}

// sharedSuperuser opens a superuser connection to the shared server of url over its Unix
// socket (deploy/local/postgres.sh trusts local connections), closed at the end of the test.
func sharedSuperuser(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	state := harness.Getenv("PGOUTBOX_STATE_DIR", filepath.Join(os.Getenv("HOME"), ".cache", "pgoutbox"))
	dirs, _ := filepath.Glob(filepath.Join(state, "pg*", "run"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, dir := range dirs {
		conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=%s", dir, cfg.Port, cfg.Database))
		if err == nil {
			t.Cleanup(func() { _ = conn.Close(context.Background()) })
			return conn
		}
	}
	harness.Unavailable(t, "no superuser connection over a Unix socket under %s/pg*/run for port %d", state, cfg.Port)
	return nil
}

// TestMessages_ExecuteOnly: a role whose only privileges are USAGE on the schema and EXECUTE
// on the functions (what capture.GrantSendSQL grants; no privilege on the table) sends events
// that arrive with their payload, headers and optimistic-update headers; before the grant it
// cannot (setup revokes EXECUTE from PUBLIC). In a hardened database where PUBLIC may not
// call pg_logical_emit_message, setup installs the SECURITY DEFINER form: the role still can
// send through pgoutbox_send but not emit messages itself.
func TestMessages_ExecuteOnly(t *testing.T) {
	t.Parallel()
	m := newMsgOutbox(t, 1)
	appURL := needRelayRole(t, m.DatabaseURL) // LOGIN REPLICATION, no privilege on any table
	app := harness.Connect(t, appURL)
	ctx := context.Background()
	send := fmt.Sprintf(`SELECT %s.pgoutbox_send('c', 'granted', '{"a": [1, "x"]}', '{"trace": "t1"}', 'm-1', false)`, m.Name)
	if _, err := app.Exec(ctx, send); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("before the grant: %v, want permission denied", err)
	}
	tbl := capture.DefaultTable()
	tbl.Schema, tbl.Name = m.Name, "outbox"
	harness.ExecSQL(t, m.DatabaseURL, capture.GrantSendSQL(tbl, relayRole))
	var canInsert bool
	if err := app.QueryRow(ctx, `SELECT has_table_privilege($1, 'INSERT')`, m.table()).Scan(&canInsert); err != nil || canInsert {
		t.Fatalf("the role may insert into the table (%v): the test would not show execute-only", err)
	}

	relay := m.start(t)
	relay.WaitLog("streaming started", 30*time.Second)
	if _, err := app.Exec(ctx, send); err != nil {
		t.Fatalf("pgoutbox_send with EXECUTE only: %v", err)
	}
	if _, err := app.Exec(ctx, fmt.Sprintf(`SELECT %s.pgoutbox_send_bytes('c', 'bytes', '\x00ff0a'::bytea)`, m.Name)); err != nil {
		t.Fatalf("pgoutbox_send_bytes with EXECUTE only: %v", err)
	}
	if _, err := app.Exec(ctx, fmt.Sprintf(`SELECT %s.pgoutbox_send('a,b', 'comma', NULL)`, m.Name)); err == nil ||
		!strings.Contains(err.Error(), "contains a comma") {
		t.Errorf("a channel with a comma: %v, want the function to refuse it", err)
	}
	recs := harness.WaitRecords(t, m.Brokers, m.Name, 2, time.Minute)
	r := recs[0]
	if string(r.Value) != `{"a": [1, "x"]}` || r.Headers["trace"] != "t1" || r.Headers["pgoutbox-mutation-id"] != "m-1" ||
		r.Headers["pgoutbox-rejected"] != "false" || r.Headers["pgoutbox-name"] != "granted" || r.Key != "c" {
		t.Errorf("record: key %q value %q headers %v", r.Key, r.Value, r.Headers)
	}
	if string(recs[1].Value) != "\x00\xff\n" || recs[1].Headers["pgoutbox-name"] != "bytes" {
		t.Errorf("bytes record: value %q headers %v", recs[1].Value, recs[1].Headers)
	}
	relay.Stop(30 * time.Second)

	// Hardened, in a transaction that is rolled back (the server is shared).
	su := sharedSuperuser(t, m.DatabaseURL)
	var sigs, owner string
	if err := su.QueryRow(ctx, `SELECT string_agg(oid::regprocedure::text, ', '),
		(SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE oid = to_regprocedure($1))
		FROM pg_proc WHERE proname = 'pg_logical_emit_message'`, m.Name+".pgoutbox_send(text,text,jsonb,jsonb,text,boolean)").Scan(&sigs, &owner); err != nil {
		t.Fatal(err)
	}
	tx, err := su.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, stmt := range []string{
		"REVOKE EXECUTE ON FUNCTION " + sigs + " FROM PUBLIC",
		"GRANT EXECUTE ON FUNCTION " + sigs + " TO " + pgx.Identifier{owner}.Sanitize(), // the functions' owner
	} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	// The invoker form setup installed cannot emit for the role any more; setup run again
	// installs the SECURITY DEFINER form (CREATE OR REPLACE keeps the owner and the grants).
	if created, err := capture.EnsureSendFunctions(ctx, tx, tbl, m.Name); err != nil || !created {
		t.Fatalf("setup in the hardened database: created %v, %v; want the SECURITY DEFINER form installed", created, err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+relayRole); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT direct"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_logical_emit_message(true, $1, '{"v": 1, "channel": "forged"}')`, m.Name); err == nil ||
		!strings.Contains(err.Error(), "permission denied") {
		t.Errorf("hardened: pg_logical_emit_message as the role: %v, want permission denied", err)
	}
	if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT direct"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, send); err != nil {
		t.Errorf("hardened: pgoutbox_send as the role: %v, want it to work (SECURITY DEFINER)", err)
	}
}

// TestMessages_PrefixMismatch: a relay whose --message-prefix differs from the one setup baked
// into pgoutbox_send would ignore every event the function sends; it refuses to start, naming
// both prefixes.
func TestMessages_PrefixMismatch(t *testing.T) {
	t.Parallel()
	m := newMsgOutbox(t, 1)
	relay := m.start(t, "PGOUTBOX_MESSAGE_PREFIX=it's_other")
	if code := relay.WaitExit(time.Minute); code == 0 {
		t.Fatal("relay started with another prefix than its functions emit")
	}
	log := relay.Log.String()
	for _, want := range []string{`emits messages with prefix \"` + m.Name + `\"`, `publishes prefix \"it's_other\"`, "pgoutbox setup --message-prefix"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, relay.Log.Tail(10))
		}
	}
}
