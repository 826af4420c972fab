//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/jackc/pglogrepl"
)

// The exactly-once checks (issue 12) shared by the fault and guard tests: what the relays'
// logs say they skipped because a partition's tail had it, which partitions they did not
// trust, and large transactions committed in the middle of a fault workload.

// dedupeLog sums what relays logged about their partitions' tails.
type dedupeLog struct {
	// skipped is the number of messages acknowledged without being sent, the tail proving them
	// to be in Kafka (the debug lines "messages already in kafka").
	skipped int
	// distrusted holds, per "topic/partition", the reasons of the warnings "not trusting the
	// partition's last record".
	distrusted map[string][]string
}

func (d dedupeLog) warnings() int {
	n := 0
	for _, r := range d.distrusted {
		n += len(r)
	}
	return n
}

// dedupeOf reads what the relays' logs say about their partitions' tails.
func dedupeOf(relays ...*harness.Relay) dedupeLog {
	d := dedupeLog{distrusted: map[string][]string{}}
	for _, p := range relays {
		for _, m := range p.LogEntries("messages already in kafka") {
			n, _ := m["skipped"].(float64)
			d.skipped += int(n)
		}
		for _, m := range p.LogEntries("not trusting the partition's last record") {
			topic, _ := m["topic"].(string)
			part, _ := m["partition"].(float64)
			reason, _ := m["reason"].(string)
			key := fmt.Sprintf("%s/%d", topic, int(part))
			d.distrusted[key] = append(d.distrusted[key], reason)
		}
	}
	return d
}

// checkKilledMidTxn verifies, from the topic's records, that the kill meant to hit each large
// transaction did: when the relay died, some but not all of the transaction's rows were in
// Kafka, and the slot had not confirmed its commit. It returns, per transaction, how many of
// its rows were in Kafka at the kill.
func checkKilledMidTxn(t *testing.T, recs []harness.Record, big []bigTxn, kills []killPoint) []int {
	t.Helper()
	c := newMidTxnCheck(big, kills)
	for _, r := range recs {
		c.add(t, r)
	}
	return c.finish(t)
}

// midTxnCheck is checkKilledMidTxn record by record, for topics too large to hold.
type midTxnCheck struct {
	big    []bigTxn
	kills  []killPoint
	sent   []int
	commit []pglogrepl.LSN
	seen   map[string]bool
}

func newMidTxnCheck(big []bigTxn, kills []killPoint) *midTxnCheck {
	return &midTxnCheck{big: big, kills: kills, sent: make([]int, len(big)), commit: make([]pglogrepl.LSN, len(big)), seen: map[string]bool{}}
}

func (c *midTxnCheck) add(t *testing.T, r harness.Record) {
	t.Helper()
	if !strings.HasPrefix(r.Key, "big-") {
		return
	}
	pos := r.Headers["pgoutbox-position"]
	if c.seen[pos] {
		return // a duplicate: checkDelivery counts those
	}
	c.seen[pos] = true
	var p harness.Payload
	if err := json.Unmarshal(r.Value, &p); err != nil {
		t.Fatalf("record %d/%d: %v", r.Partition, r.Offset, err)
	}
	for i, b := range c.big {
		if p.Counter < b.first || p.Counter >= b.first+int64(b.rows) {
			continue
		}
		lsn, err := pglogrepl.ParseLSN(r.Headers["pgoutbox-commit-lsn"])
		if err != nil {
			t.Fatalf("record %d/%d: %v", r.Partition, r.Offset, err)
		}
		c.commit[i] = lsn
		if r.Offset < c.kills[b.kill].ends[r.Partition] {
			c.sent[i]++
		}
	}
}

func (c *midTxnCheck) finish(t *testing.T) []int {
	t.Helper()
	for i, b := range c.big {
		k := c.kills[b.kill]
		// A slot confirmed exactly at the commit record's start (a keepalive sent just before
		// the transaction) still decodes the transaction again: PostgreSQL skips a transaction
		// only when its commit lies before the confirmed position.
		if c.sent[i] == 0 || c.sent[i] == b.rows || k.confirmed > c.commit[i] {
			t.Errorf("kill %d did not hit the %d-row transaction (commit %s) mid-delivery: %d of its rows were in Kafka, the slot had confirmed %s",
				b.kill+1, b.rows, c.commit[i], c.sent[i], k.confirmed)
		}
	}
	return c.sent
}

// checkNoDuplicates fails the test when the topic holds a row twice: after kills and
// restarts, each partition's tail tells the next session what not to send again.
func checkNoDuplicates(t *testing.T, dups, records int) {
	t.Helper()
	if dups != 0 {
		t.Errorf("%d duplicate records among %d: exactly-once into Kafka is broken (see the relay logs for the partitions' tail reads)", dups, records)
	}
}

// bigTxn is one large transaction committed into a fault workload: rows on channels big-0 ..
// big-9 whose counters run from first to first+rows-1 (so that the channels' counters keep
// growing in commit order across big transactions).
type bigTxn struct {
	first int64
	rows  int
	// kill is the index of the kill that was meant to hit it in the middle of its delivery.
	kill int
}
