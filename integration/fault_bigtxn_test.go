//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/segmentio/kafka-go"
)

// TestFault_LargeTransaction: one transaction inserts 1,000,000 outbox rows, between small
// transactions before and after it. All of them arrive, in commit order per channel and in
// insert order within the big one, while the relay's peak resident memory (VmHWM) stays bounded
// by its in-flight window — the default 20,000 rows — and not by the transaction.
//
// The relay here is built WITHOUT the race detector: its shadow memory would multiply the figure
// being measured, and its slowness the test's time. The records are checked as they are read,
// without keeping a million of them.
func TestFault_LargeTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("about 3 minutes; skipped with -short")
	}
	t.Parallel()
	const (
		partitions = 3
		channels   = 100
		bigRows    = 1_000_000
		smallTxns  = 5 // before and after, 4 rows each
		maxEvents  = 20_000
		// The bound on the relay's peak RSS. The window admits 20,000 rows of about 250
		// bytes each (payload, key, five headers): ~5 MB of events, a few times that with the
		// Kafka requests built from them and the Go heap's growth target (GOGC=100); the idle
		// relay itself takes ~20-30 MB. The transaction's rows, if the relay held them, would
		// take more than 250 MB.
		peakBound = 128 << 20
	)
	bin := harness.BuildRelay(t, false)
	e := harness.NewOutbox(t, partitions)
	relay := e.StartRelayWith(t, bin, fmt.Sprintf("PGOUTBOX_MAX_INFLIGHT_EVENTS=%d", maxEvents), "PGOUTBOX_LOG_LEVEL=info")
	relay.WaitLog("streaming started", time.Minute)

	committed := &harness.CommittedRows{Rows: map[string][]int64{}}
	insert := func(from, to int64) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		err := harness.Exec(ctx, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s (channel, name, data)
			SELECT 'ch-' || (k %% %d), 'big', jsonb_build_object('channel', 'ch-' || (k %% %d), 'counter', k)
			FROM generate_series($1::bigint, $2::bigint) k ORDER BY k`, e.Name, channels, channels), from, to)
		if err != nil {
			t.Fatal(err)
		}
		for k := from; k <= to; k++ {
			committed.Add(harness.Payload{Channel: fmt.Sprintf("ch-%d", k%channels), Counter: k})
		}
	}
	// Counters grow in commit order: 1-20 before, 1,001-1,001,000 in the big transaction,
	// 2,000,001-2,000,020 after.
	for i := range int64(smallTxns) {
		insert(1+4*i, 4+4*i)
	}
	harness.WaitTopicEnd(t, e, partitions, 4*smallTxns, time.Minute)
	baseRSS, err := harness.ProcStatus(relay.Pid(), "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	insert(1_001, 1_000+bigRows)
	inserted := time.Since(began)
	for i := range int64(smallTxns) {
		insert(2_000_001+4*i, 2_000_004+4*i)
	}
	harness.WaitConfirmedPast(t, e, harness.CurrentWAL(t, e.DatabaseURL), 10*time.Minute)
	delivered := time.Since(began)
	peak, err := harness.ProcStatus(relay.Pid(), "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	relay.Stop(30 * time.Second)

	c := newDeliveryCheck(t, partitions)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := harness.ScanTopic(ctx, e.Brokers, e.Name, c.add); err != nil {
		t.Fatalf("read topic: %v", err)
	}
	c.finish(committed)
	if c.records != committed.N {
		t.Errorf("topic holds %d records, %d rows were committed", c.records, committed.N)
	}
	if peak > peakBound {
		t.Errorf("the relay's peak RSS (VmHWM) was %s while relaying a %d-row transaction; want at most %s (window %d rows)",
			harness.MiB(peak), bigRows, harness.MiB(peakBound), maxEvents)
	}
	t.Logf("transaction of %d rows (+%d small ones) inserted in %s, confirmed %s after it began (%.0f rows/s end to end); relay RSS %s before it, peak (VmHWM) %s; records %d, duplicates %d",
		bigRows, 2*smallTxns, inserted.Round(time.Millisecond), delivered.Round(time.Millisecond),
		float64(bigRows)/delivered.Seconds(), harness.MiB(baseRSS), harness.MiB(peak), c.records, c.duplicates)
}

// deliveryCheck is checkDelivery record by record, for topics too large to hold in memory:
// the same checks, in the same order of records.
type deliveryCheck struct {
	t                   *testing.T
	parts               []int
	balancer            kafka.Murmur2Balancer
	seen                map[string]map[int64]firstCopy
	last                map[string]int64
	lastPos             map[string]string
	records, duplicates int
	problems            int
}

type firstCopy struct{ id, pos string }

func newDeliveryCheck(t *testing.T, partitions int) *deliveryCheck {
	c := &deliveryCheck{t: t, balancer: kafka.Murmur2Balancer{Consistent: true},
		seen: map[string]map[int64]firstCopy{}, last: map[string]int64{}, lastPos: map[string]string{}}
	for i := range partitions {
		c.parts = append(c.parts, i)
	}
	return c
}

// errorf reports the first problems and counts the rest: a broken run must not print a
// million lines.
func (c *deliveryCheck) errorf(format string, args ...any) {
	c.t.Helper()
	c.problems++
	if c.problems <= 20 {
		c.t.Errorf(format, args...)
	}
}

func (c *deliveryCheck) add(r harness.Record) {
	c.t.Helper()
	c.records++
	var p harness.Payload
	if err := json.Unmarshal(r.Value, &p); err != nil {
		c.errorf("record %d/%d: bad payload %q: %v", r.Partition, r.Offset, r.Value, err)
		return
	}
	if p.RolledBack {
		c.errorf("record %d/%d comes from a rolled-back transaction: %s", r.Partition, r.Offset, r.Value)
	}
	if r.Key != p.Channel {
		c.errorf("record %d/%d has key %q, want the channel %q", r.Partition, r.Offset, r.Key, p.Channel)
	}
	if want := c.balancer.Balance(kafka.Message{Key: []byte(r.Key)}, c.parts...); want != r.Partition {
		c.errorf("channel %s on partition %d, murmur2 says %d", r.Key, r.Partition, want)
	}
	for _, h := range []string{"pgoutbox-id", "pgoutbox-name", "pgoutbox-position", "pgoutbox-commit-lsn", "pgoutbox-xid"} {
		if r.Headers[h] == "" {
			c.errorf("record %d/%d lacks header %s: %v", r.Partition, r.Offset, h, r.Headers)
		}
	}
	if c.seen[p.Channel] == nil {
		c.seen[p.Channel] = map[int64]firstCopy{}
	}
	pos := r.Headers["pgoutbox-position"]
	if first, dup := c.seen[p.Channel][p.Counter]; dup {
		c.duplicates++
		if first.id != r.Headers["pgoutbox-id"] || first.pos != pos {
			c.errorf("duplicate %s#%d has other id/position headers than its first copy: %v vs %+v", p.Channel, p.Counter, r.Headers, first)
		}
		return
	}
	c.seen[p.Channel][p.Counter] = firstCopy{id: r.Headers["pgoutbox-id"], pos: pos}
	if p.Counter <= c.last[p.Channel] {
		c.errorf("channel %s: counter %d after %d (commit order broken)", p.Channel, p.Counter, c.last[p.Channel])
	}
	if pos <= c.lastPos[p.Channel] {
		c.errorf("channel %s: position %s after %s", p.Channel, pos, c.lastPos[p.Channel])
	}
	c.last[p.Channel], c.lastPos[p.Channel] = p.Counter, pos
}

// finish checks that every committed row was seen.
func (c *deliveryCheck) finish(want *harness.CommittedRows) {
	c.t.Helper()
	missing := 0
	for ch, counters := range want.Rows {
		for _, n := range counters {
			if _, ok := c.seen[ch][n]; !ok {
				missing++
				if missing <= 10 {
					c.t.Errorf("committed row %s#%d missing from Kafka", ch, n)
				}
			}
		}
		if got := len(c.seen[ch]); got != len(counters) {
			c.errorf("channel %s: %d distinct rows in Kafka, %d committed", ch, got, len(counters))
		}
	}
	if missing > 0 {
		c.t.Errorf("%d committed rows missing from Kafka", missing)
	}
	if c.problems > 20 {
		c.t.Errorf("%d problems in all (the first 20 shown)", c.problems)
	}
}
