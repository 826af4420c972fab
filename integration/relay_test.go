//go:build integration

package integration

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/segmentio/kafka-go"
)

// checkDelivery verifies the topic against what was committed: every committed row present,
// no rolled-back row, per-channel counters in commit order with no gap, keys on the murmur2
// partition. It returns the number of duplicate records (same channel and counter).
func checkDelivery(t *testing.T, recs []harness.Record, want *harness.CommittedRows, partitions int) (duplicates int) {
	t.Helper()
	seen := map[string]map[int64]harness.Record{}
	order := newChannelOrder()
	for _, r := range recs {
		var p harness.Payload
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
			seen[p.Channel] = map[int64]harness.Record{}
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
	checkNoneMissing(t, want.Rows, "row", func(ch string, c int64) bool {
		_, ok := seen[ch][c]
		return ok
	})
	for ch, counters := range want.Rows {
		if got := len(seen[ch]); got != len(counters) {
			t.Errorf("channel %s: %d distinct rows in Kafka, %d committed", ch, got, len(counters))
		}
	}
	return duplicates
}

// checkPartition checks that record r sits on the partition kafka-go's consistent murmur2
// balancer (the relay's) gives its key among partitions.
func checkPartition(t *testing.T, r harness.Record, partitions int) {
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
	e := harness.NewOutboxOn(t, pg.services(t), partitions)
	w := harness.Workload{Writers: 8, Rows: 10_000, Channels: 100, MaxTxnRows: 20}
	harness.PrepareWorkload(t, e, w.Channels)

	relay := e.StartRelay(t)
	relay.WaitLog("streaming started", 30*time.Second)
	committed := harness.RunWorkload(t, e, w)
	end := harness.CurrentWAL(t, e.DatabaseURL)
	harness.WaitConfirmedPast(t, e, end, 2*time.Minute)

	recs := harness.WaitRecords(t, e.Brokers, e.Name, committed.N, time.Minute)
	dups := checkDelivery(t, recs, committed, partitions)
	if dups != 0 {
		t.Errorf("%d duplicates in a run without a crash", dups)
	}
	if len(recs) != committed.N {
		t.Errorf("topic holds %d records, %d rows were committed", len(recs), committed.N)
	}
	relay.Stop(30 * time.Second)
	if log := relay.Log.String(); !contains(log, "final status update sent") {
		t.Errorf("relay did not send a final status update on SIGTERM")
	}
	t.Logf("rows committed %d, channels %d, records in Kafka %d, duplicates %d", committed.N, len(committed.Rows), len(recs), dups)
}
