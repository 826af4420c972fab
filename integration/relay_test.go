//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
)

// payload is what the test writers store in the outbox's data column.
type payload struct {
	Channel    string `json:"channel"`
	Counter    int64  `json:"counter"`
	Writer     int    `json:"writer"`
	RolledBack bool   `json:"rolled_back"`
}

// workload describes concurrent writers: each transaction bumps a per-channel counter row and
// stores the counter in the payload, so the counter order IS the commit order of the channel.
type workload struct {
	Writers, Rows, Channels, MaxTxnRows int
}

// committedRows is what the writers committed: channel → counters.
type committedRows struct {
	mu   sync.Mutex
	rows map[string][]int64
	n    int
}

func (c *committedRows) add(p payload) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rows[p.Channel] = append(c.rows[p.Channel], p.Counter)
	c.n++
}

// prepareWorkload creates the counter and the unrelated tables of an outbox.
func prepareWorkload(t *testing.T, e outboxEnv, channels int) {
	t.Helper()
	execSQL(t, e.DatabaseURL, fmt.Sprintf(`CREATE TABLE %s_counters (channel text PRIMARY KEY, n bigint NOT NULL DEFAULT 0)`, e.Name))
	execSQL(t, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s_counters SELECT 'ch-' || g FROM generate_series(0, $1::int - 1) g`, e.Name), channels)
	execSQL(t, e.DatabaseURL, fmt.Sprintf(`CREATE TABLE %s_other (id bigserial PRIMARY KEY, v text)`, e.Name))
	t.Cleanup(func() {
		exec0(t, e.DatabaseURL, fmt.Sprintf(`DROP TABLE IF EXISTS %s_counters, %s_other`, e.Name, e.Name))
	})
}

// runWorkload runs the writers to completion: w.Rows committed outbox rows in transactions of
// 1..MaxTxnRows rows, about one in ten rolled back and one in ten touching only another table.
func runWorkload(t *testing.T, e outboxEnv, w workload) *committedRows {
	t.Helper()
	got := &committedRows{rows: map[string][]int64{}}
	var wg sync.WaitGroup
	errs := make(chan error, w.Writers)
	for i := range w.Writers {
		quota := writerQuota(w.Rows, w.Writers, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- writer(e, w, i, quota, got)
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

// writerQuota splits rows over writers; the first takes the remainder.
func writerQuota(rows, writers, i int) int {
	if i == 0 {
		return rows/writers + rows%writers
	}
	return rows / writers
}

func writer(e outboxEnv, w workload, id, quota int, got *committedRows) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, e.DatabaseURL)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }()
	rng := rand.New(rand.NewPCG(uint64(id), 42))
	bump := fmt.Sprintf(`UPDATE %s_counters SET n = n + 1 WHERE channel = $1 RETURNING n`, e.Name)
	insert := fmt.Sprintf(`INSERT INTO %s (channel, name, data) VALUES ($1, 'test.event', $2)`, e.Name)
	other := fmt.Sprintf(`INSERT INTO %s_other (v) VALUES ($1)`, e.Name)

	for quota > 0 {
		kind := rng.IntN(10) // 0: rolled back, 1: other table only, else committed
		if kind == 1 {
			if _, err := conn.Exec(ctx, other, "only"); err != nil {
				return err
			}
			continue
		}
		n := 1 + rng.IntN(w.MaxTxnRows)
		if kind != 0 {
			n = min(n, quota)
		}
		chans := make([]string, n)
		for i := range chans {
			chans[i] = fmt.Sprintf("ch-%d", rng.IntN(w.Channels))
		}
		slices.Sort(chans) // lock counter rows in one order: no deadlocks between writers
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		var rows []payload
		for _, ch := range chans {
			p := payload{Channel: ch, Writer: id, RolledBack: kind == 0}
			if err := tx.QueryRow(ctx, bump, ch).Scan(&p.Counter); err != nil {
				return err
			}
			data, _ := json.Marshal(p)
			if _, err := tx.Exec(ctx, insert, ch, data); err != nil {
				return err
			}
			rows = append(rows, p)
		}
		if _, err := tx.Exec(ctx, other, "with outbox rows"); err != nil {
			return err
		}
		if kind == 0 {
			if err := tx.Rollback(ctx); err != nil {
				return err
			}
			continue
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		for _, p := range rows {
			got.add(p)
		}
		quota -= n
	}
	return nil
}

// currentWAL returns pg_current_wal_lsn() as text.
func currentWAL(t *testing.T, url string) string {
	t.Helper()
	var s string
	if err := connect(t, url).QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitConfirmedPast waits until the slot's confirmed position reaches lsn.
func waitConfirmedPast(t *testing.T, e outboxEnv, lsn string, timeout time.Duration) {
	t.Helper()
	want := mustLSN(t, lsn)
	deadline := time.Now().Add(timeout)
	for {
		got := slotConfirmed(t, e.DatabaseURL, e.Name)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot confirmed %s after %s, want >= %s", got, timeout, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkDelivery verifies the topic against what was committed: every committed row present,
// no rolled-back row, per-channel counters in commit order with no gap, keys on the murmur2
// partition. It returns the number of duplicate records (same channel and counter).
func checkDelivery(t *testing.T, recs []record, want *committedRows, partitions int) (duplicates int) {
	t.Helper()
	seen := map[string]map[int64]record{}
	order := newChannelOrder()
	for _, r := range recs {
		var p payload
		if err := json.Unmarshal(r.Value, &p); err != nil {
			t.Fatalf("record %d/%d: bad payload %q: %v", r.Partition, r.Offset, r.Value, err)
		}
		if p.RolledBack {
			t.Errorf("record %d/%d comes from a rolled-back transaction: %s", r.Partition, r.Offset, r.Value)
		}
		if r.Key != p.Channel {
			t.Errorf("record %d/%d has key %q, want the channel %q", r.Partition, r.Offset, r.Key, p.Channel)
		}
		checkPartition(t, r, partitions)
		for _, h := range []string{"pgoutbox-id", "pgoutbox-name", "pgoutbox-position", "pgoutbox-commit-lsn", "pgoutbox-xid"} {
			if r.Headers[h] == "" {
				t.Fatalf("record %d/%d lacks header %s: %v", r.Partition, r.Offset, h, r.Headers)
			}
		}
		if seen[p.Channel] == nil {
			seen[p.Channel] = map[int64]record{}
		}
		if first, dup := seen[p.Channel][p.Counter]; dup {
			duplicates++
			if first.Headers["pgoutbox-id"] != r.Headers["pgoutbox-id"] || first.Headers["pgoutbox-position"] != r.Headers["pgoutbox-position"] {
				t.Errorf("duplicate %s#%d has other id/position headers than its first copy: %v vs %v", p.Channel, p.Counter, r.Headers, first.Headers)
			}
			continue // a re-sent row: order is checked on first copies
		}
		seen[p.Channel][p.Counter] = r
		order.check(t, p.Channel, p.Counter, r.Headers["pgoutbox-position"])
	}
	checkNoneMissing(t, want.rows, "row", func(ch string, c int64) bool {
		_, ok := seen[ch][c]
		return ok
	})
	for ch, counters := range want.rows {
		if got := len(seen[ch]); got != len(counters) {
			t.Errorf("channel %s: %d distinct rows in Kafka, %d committed", ch, got, len(counters))
		}
	}
	return duplicates
}

// checkPartition checks that record r sits on the partition kafka-go's consistent murmur2
// balancer (the relay's) gives its key among partitions.
func checkPartition(t *testing.T, r record, partitions int) {
	t.Helper()
	parts := make([]int, partitions)
	for i := range parts {
		parts[i] = i
	}
	balancer := kafka.Murmur2Balancer{Consistent: true}
	if want := balancer.Balance(kafka.Message{Key: []byte(r.Key)}, parts...); want != r.Partition {
		t.Errorf("channel %s on partition %d, murmur2 says %d", r.Key, r.Partition, want)
	}
}

// channelOrder checks that each channel's first copies arrive in commit order: counters and
// pgoutbox-position headers both rising.
type channelOrder struct {
	last    map[string]int64
	lastPos map[string]string
}

func newChannelOrder() *channelOrder {
	return &channelOrder{last: map[string]int64{}, lastPos: map[string]string{}}
}

func (o *channelOrder) check(t *testing.T, channel string, counter int64, pos string) {
	t.Helper()
	if counter <= o.last[channel] {
		t.Errorf("channel %s: counter %d after %d (commit order broken)", channel, counter, o.last[channel])
	}
	if pos <= o.lastPos[channel] {
		t.Errorf("channel %s: position %s after %s", channel, pos, o.lastPos[channel])
	}
	o.last[channel], o.lastPos[channel] = counter, pos
}

// checkNoneMissing reports every committed counter of rows (channel → counters) that seen
// does not hold, the first 10 one by one; noun names what was committed ("row", "event").
func checkNoneMissing(t *testing.T, rows map[string][]int64, noun string, seen func(channel string, counter int64) bool) {
	t.Helper()
	missing := 0
	for ch, counters := range rows {
		for _, c := range counters {
			if !seen(ch, c) {
				missing++
				if missing <= 10 {
					t.Errorf("committed %s %s#%d missing from Kafka", noun, ch, c)
				}
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d committed %ss missing from Kafka", missing, noun)
	}
}

// TestRelay_CompletenessAndOrder: 8 concurrent writers commit 10,000 outbox rows over 100
// channels while the relay streams; every committed row arrives exactly once, none of a
// rolled-back transaction, each channel in commit order.
func TestRelay_CompletenessAndOrder(t *testing.T) {
	t.Parallel()
	testCompletenessAndOrder(t, pgTarget{})
}

func testCompletenessAndOrder(t *testing.T, pg pgTarget) {
	const partitions = 3
	e := newOutboxOn(t, pg.services(t), partitions)
	w := workload{Writers: 8, Rows: 10_000, Channels: 100, MaxTxnRows: 20}
	prepareWorkload(t, e, w.Channels)

	relay := e.startRelay(t)
	relay.waitLog("streaming started", 30*time.Second)
	committed := runWorkload(t, e, w)
	end := currentWAL(t, e.DatabaseURL)
	waitConfirmedPast(t, e, end, 2*time.Minute)

	recs := waitRecords(t, e.Brokers, e.Name, committed.n, time.Minute)
	dups := checkDelivery(t, recs, committed, partitions)
	if dups != 0 {
		t.Errorf("%d duplicates in a run without a crash", dups)
	}
	if len(recs) != committed.n {
		t.Errorf("topic holds %d records, %d rows were committed", len(recs), committed.n)
	}
	relay.stop(30 * time.Second)
	if log := relay.log.String(); !contains(log, "final status update sent") {
		t.Errorf("relay did not send a final status update on SIGTERM")
	}
	t.Logf("rows committed %d, channels %d, records in Kafka %d, duplicates %d", committed.n, len(committed.rows), len(recs), dups)
}
