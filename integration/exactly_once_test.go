//go:build integration

package integration

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/segmentio/kafka-go"
)

// TestFault_RelayKilledInLargeTransaction: a transaction of 200,000 outbox rows is committed
// while two writers commit small ones, and the relay is killed with SIGKILL twice while it
// delivers it — once with about half of it in Kafka, once again after its successor has sent
// more. The slot cannot confirm a transaction before all its rows are acknowledged, so each new
// relay streams the whole transaction again from its first row; the partitions' tails tell it
// which rows are in Kafka already. Every committed row arrives, in order, exactly once.
func TestFault_RelayKilledInLargeTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("a few minutes; skipped with -short")
	}
	t.Parallel()
	const partitions, bigRows = 3, 200_000
	e := harness.NewOutbox(t, partitions)
	w := harness.FaultWorkload{Workload: harness.Workload{Writers: 2, Rows: 4_000, Channels: 50, MaxTxnRows: 10}, Pause: 20 * time.Millisecond}
	harness.PrepareWorkload(t, e, w.Channels)

	relay := e.StartRelay(t)
	relays := []*harness.Relay{relay}
	relay.WaitLog("streaming started", time.Minute)
	run := harness.StartWorkload(t, e, w)
	harness.WaitTopicEnd(t, e, partitions, 500, 2*time.Minute)

	before := harness.TopicEnd(t, e, partitions)
	harness.CommitBigTxn(t, e, run.Got, 1_000_000, bigRows)
	var kills []killPoint
	var big []bigTxn
	// Kill when the topic holds about 45% of the transaction, then about 75% of it: the second
	// relay skips the first part and dies while sending the rest.
	for _, share := range []float64{0.45, 0.75} {
		harness.WaitTopicEnd(t, e, partitions, before+int64(share*bigRows), 10*time.Minute)
		relay.Kill()
		harness.WaitSlotInactive(t, e.DatabaseURL, e.Name, 30*time.Second)
		big = append(big, bigTxn{first: 1_000_000, rows: bigRows, kill: len(kills)})
		kills = append(kills, killPoint{confirmed: harness.SlotConfirmed(t, e.DatabaseURL, e.Name), ends: harness.EndOffsets(t, e, partitions)})
		t.Logf("kill %d: %d rows committed, slot confirmed %s, %d records in Kafka",
			len(kills), run.Committed(), kills[len(kills)-1].confirmed, harness.TopicEnd(t, e, partitions))
		relay = e.StartRelay(t)
		relays = append(relays, relay)
		relay.WaitLog("streaming started", time.Minute)
	}
	committed := run.Wait(t)
	harness.WaitConfirmedPast(t, e, harness.CurrentWAL(t, e.DatabaseURL), 10*time.Minute)
	relay.Stop(30 * time.Second)

	// The records are checked as they are read: a quarter of a million of them with their
	// headers would take too much of this machine's memory.
	c := newDeliveryCheck(t, partitions)
	mid := newMidTxnCheck(big, kills)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := harness.ScanTopic(ctx, e.Brokers, e.Name, func(r harness.Record) { c.add(r); mid.add(t, r) }); err != nil {
		t.Fatalf("read topic: %v", err)
	}
	c.finish(committed)
	sent := mid.finish(t)
	checkNoDuplicates(t, c.duplicates, c.records)
	d := dedupeOf(relays...)
	if d.warnings() > 0 {
		t.Errorf("the relays did not trust their own partitions' tails: %v", d.distrusted)
	}
	if d.skipped < sent[1] {
		// The relays after the kills streamed the whole transaction again: what the dead ones
		// had sent must have been skipped, not merely lost somewhere.
		t.Errorf("the relays skipped %d messages as already in Kafka; %d rows of the transaction were in Kafka at the second kill", d.skipped, sent[1])
	}
	t.Logf("transaction of %d rows killed twice mid-delivery (%v of its rows in Kafka at the kills, confirmed %s); rows committed %d, records %d, duplicates %d, skipped as already in Kafka %d",
		bigRows, sent, confirmedList(kills), committed.N, c.records, c.duplicates, d.skipped)
}

// TestExactlyOnce_TopicSharedWithAnotherSlot: two outboxes of the same database, each with its
// own slot, write the same topic. The second relay fills the partitions' tails with its records
// while rows of the first outbox wait in their slot — rows committed BEFORE those records, so
// at lower positions: trusting the other stream's tail would skip every one of them. The first
// relay steps back over the other stream's records, finds none of its own, and sends everything
// (one warning per partition, naming the other stream). Then both write again: each steps over
// the other's records to its own, trusts it, and sends all of its new rows, exactly once.
func TestExactlyOnce_TopicSharedWithAnotherSlot(t *testing.T) {
	t.Parallel()
	const partitions = 3
	a := harness.NewOutbox(t, partitions)
	b := harness.NewOutbox(t, partitions)
	toA := "PGOUTBOX_TOPIC=" + a.Name // b's relay writes a's topic
	gotA := &harness.CommittedRows{Rows: map[string][]int64{}}
	gotB := &harness.CommittedRows{Rows: map[string][]int64{}}

	// Few enough rows that each stream's records of a round stay within the tail window (100
	// records) however the channels fall on the partitions.
	for i := range 3 {
		harness.CommitRows(t, a, gotA, "a-", int64(1+i*30), 30)
	}
	for i := range 3 {
		harness.CommitRows(t, b, gotB, "b-", int64(1+i*20), 20)
	}
	relayB := deliverOnce(t, b, toA)
	relayA := deliverOnce(t, a)
	first := dedupeOf(relayA)
	usedA, usedB := partitionsOf("a-", partitions), partitionsOf("b-", partitions)
	for p := range partitions {
		key := fmt.Sprintf("%s/%d", a.Name, p)
		r := first.distrusted[key]
		switch {
		case usedA[p] && usedB[p]:
			if len(r) != 1 || !strings.Contains(r[0], "from another stream") {
				t.Errorf("partition %s: warnings %q, want one naming another stream", key, r)
			}
		case len(r) != 0:
			t.Errorf("partition %s: warnings %q, want none (the streams do not share it)", key, r)
		}
	}
	if !slices.ContainsFunc(slices.Collect(maps.Keys(usedA)), func(p int) bool { return usedB[p] }) {
		t.Fatalf("no partition holds rows of both streams: the test proves nothing (a: %v, b: %v)", usedA, usedB)
	}
	if first.skipped != 0 || dedupeOf(relayB).skipped != 0 {
		t.Errorf("skipped %d (a) and %d (b) messages; nothing of either stream was in Kafka", first.skipped, dedupeOf(relayB).skipped)
	}

	for i := range 3 {
		harness.CommitRows(t, a, gotA, "a-", int64(1+90+i*30), 30)
		harness.CommitRows(t, b, gotB, "b-", int64(1+60+i*20), 20)
	}
	relayB2 := deliverOnce(t, b, toA)
	relayA2 := deliverOnce(t, a)
	second := dedupeOf(relayA2, relayB2)
	if second.warnings() != 0 || second.skipped != 0 {
		t.Errorf("second round: %d messages skipped, warnings %v; want each relay to trust its own records behind the other's and skip nothing",
			second.skipped, second.distrusted)
	}

	recs := harness.WaitRecords(t, a.Brokers, a.Name, gotA.N+gotB.N, time.Minute)
	recsA, recsB := recordsOfSlot(recs, a.Name), recordsOfSlot(recs, b.Name)
	dupsA := checkDelivery(t, recsA, gotA, partitions)
	dupsB := checkDelivery(t, recsB, gotB, partitions)
	checkNoDuplicates(t, dupsA+dupsB, len(recs))
	if len(recsA)+len(recsB) != len(recs) {
		t.Errorf("%d of the topic's %d records come from neither slot", len(recs)-len(recsA)-len(recsB), len(recs))
	}
	t.Logf("topic shared by two slots: %d+%d rows committed, %d+%d records, duplicates %d; first round: %d warnings (%v), skipped %d; second round: warnings %d, skipped %d",
		gotA.N, gotB.N, len(recsA), len(recsB), dupsA+dupsB, first.warnings(), first.distrusted, first.skipped, second.warnings(), second.skipped)
}

// TestExactlyOnce_ForeignTail: records that are not this stream's sit at the partitions'
// tails, with positions far above the rows waiting in the slot. Records of another producer
// (no pgoutbox headers) and of another cluster (another system identifier, same slot name) are
// stepped over to the stream's own last record, which is trusted: nothing is skipped, no
// warning. A record that claims to be this very stream's but lies beyond the server's WAL (what
// a database restored from an older copy would find) is not trusted: one warning per
// partition, and every row is sent.
func TestExactlyOnce_ForeignTail(t *testing.T) {
	t.Parallel()
	const partitions = 3
	e := harness.NewOutbox(t, partitions)
	got := &harness.CommittedRows{Rows: map[string][]int64{}}

	harness.CommitRows(t, e, got, "ch-", 1, 150)
	deliverOnce(t, e)
	recs := harness.WaitRecords(t, e.Brokers, e.Name, got.N, time.Minute)
	source := recs[0].Headers["pgoutbox-source"]
	parts := strings.Split(source, "/")
	if len(parts) != 4 {
		t.Fatalf("pgoutbox-source %q: want <system id>/<timeline>/<slot>/<routing>", source)
	}
	otherSystem := strings.Join(append([]string{parts[0] + "1"}, parts[1:]...), "/")
	const far = "7FFFFFFF00000000-00000000" // above any position this server will reach
	for p := range partitions {
		produceRecords(t, e, p,
			kafka.Record{Value: kafka.NewBytes([]byte("another producer"))},
			kafka.Record{Value: kafka.NewBytes([]byte(`{"channel":"x","counter":1}`)), Headers: []kafka.Header{
				{Key: "pgoutbox-position", Value: []byte(far)},
				{Key: "pgoutbox-source", Value: []byte(otherSystem)},
				{Key: "pgoutbox-partitions", Value: []byte(fmt.Sprint(partitions))},
			}})
	}
	harness.CommitRows(t, e, got, "ch-", 1+150, 150)
	stepped := dedupeOf(deliverOnce(t, e))
	if stepped.warnings() != 0 || stepped.skipped != 0 {
		t.Errorf("behind foreign records: %d skipped, warnings %v; want the stream's own last record trusted and nothing skipped", stepped.skipped, stepped.distrusted)
	}

	for p := range partitions {
		produceRecords(t, e, p, kafka.Record{Value: kafka.NewBytes([]byte(`{"channel":"x","counter":2}`)), Headers: []kafka.Header{
			{Key: "pgoutbox-position", Value: []byte(far)},
			{Key: "pgoutbox-source", Value: []byte(source)},
			{Key: "pgoutbox-partitions", Value: []byte(fmt.Sprint(partitions))},
		}})
	}
	harness.CommitRows(t, e, got, "ch-", 1+300, 150)
	beyond := dedupeOf(deliverOnce(t, e))
	used := partitionsOf("ch-", partitions) // a tail is read on the partition's first use
	for p := range partitions {
		key := fmt.Sprintf("%s/%d", e.Name, p)
		r := beyond.distrusted[key]
		if used[p] && (len(r) != 1 || !strings.Contains(r[0], "beyond the server's WAL position")) {
			t.Errorf("partition %s: warnings %q, want one saying the record lies beyond the server's WAL", key, r)
		}
	}
	if beyond.warnings() != len(used) {
		t.Errorf("%d warnings for %d partitions in use: %v", beyond.warnings(), len(used), beyond.distrusted)
	}
	if beyond.skipped != 0 {
		t.Errorf("%d messages skipped on the word of a record beyond the server's WAL", beyond.skipped)
	}

	recs = harness.WaitRecords(t, e.Brokers, e.Name, got.N+3*partitions, time.Minute)
	ours := recordsOfSlot(recs, parts[2])
	var own []harness.Record
	for _, r := range ours {
		if r.Headers["pgoutbox-position"] != far {
			own = append(own, r)
		}
	}
	dups := checkDelivery(t, own, got, partitions)
	checkNoDuplicates(t, dups, len(own))
	if foreign := len(recs) - len(own); foreign != 3*partitions {
		t.Errorf("%d foreign records in the topic, %d produced", foreign, 3*partitions)
	}
	t.Logf("foreign tails: %d rows committed, %d records of the stream, duplicates %d; behind another producer's and another system's records: warnings %d, skipped %d; behind a record beyond the WAL: warnings %d (%v), skipped %d",
		got.N, len(own), dups, stepped.warnings(), stepped.skipped, beyond.warnings(), beyond.distrusted, beyond.skipped)
}

// TestExactlyOnce_RecreatedSlot: the slot is dropped and created again under the same name,
// with rows waiting in the old one (they are gone with it: the new slot starts at the server's
// current WAL position). The partitions' tails hold the old slot's records, under the same
// source. They are trusted, and need no guard: every row the new slot streams committed after
// it was created, above any position of the old slot, so none of them is skipped.
func TestExactlyOnce_RecreatedSlot(t *testing.T) {
	t.Parallel()
	const partitions = 3
	e := harness.NewOutbox(t, partitions)
	got := &harness.CommittedRows{Rows: map[string][]int64{}}
	harness.CommitRows(t, e, got, "ch-", 1, 150)
	deliverOnce(t, e)

	// Rows that only the old slot would have streamed: not expected in Kafka.
	lostWithSlot := &harness.CommittedRows{Rows: map[string][]int64{}}
	harness.CommitRows(t, e, lostWithSlot, "ch-", 1+150, 90)
	if out, err := e.Pgoutbox(t, "drop-slot", "--yes"); err != nil {
		t.Fatalf("pgoutbox drop-slot: %v\n%s", err, out)
	}
	if out, err := e.Pgoutbox(t, "setup", "--partitions", fmt.Sprint(partitions)); err != nil {
		t.Fatalf("pgoutbox setup (the slot again): %v\n%s", err, out)
	}
	harness.CommitRows(t, e, got, "ch-", 1+240, 150)
	d := dedupeOf(deliverOnce(t, e))
	if d.skipped != 0 {
		t.Errorf("%d messages of the re-created slot skipped", d.skipped)
	}
	if d.warnings() != 0 {
		t.Errorf("warnings %v: the old slot's records are this stream's and below the new slot's", d.distrusted)
	}

	recs := harness.WaitRecords(t, e.Brokers, e.Name, got.N, time.Minute)
	dups := checkDelivery(t, recs, got, partitions)
	checkNoDuplicates(t, dups, len(recs))
	if len(recs) != got.N {
		t.Errorf("%d records in the topic, %d rows streamed by the two slots", len(recs), got.N)
	}
	t.Logf("re-created slot: %d rows streamed by the old and the new slot (%d lost with the old one), %d records, duplicates %d, skipped %d, warnings %d",
		got.N, lostWithSlot.N, len(recs), dups, d.skipped, d.warnings())
}

// deliverOnce runs a relay of e until the slot is confirmed past everything written so far,
// stops it and returns it (for its log).
func deliverOnce(t *testing.T, e harness.Outbox, extraEnv ...string) *harness.Relay {
	t.Helper()
	relay := e.StartRelay(t, extraEnv...)
	relay.WaitLog("streaming started", time.Minute)
	harness.WaitConfirmedPast(t, e, harness.CurrentWAL(t, e.DatabaseURL), 2*time.Minute)
	relay.Stop(30 * time.Second)
	return relay
}

// partitionsOf returns the partitions that commitRows's channels <prefix>0 .. <prefix>9 map to.
func partitionsOf(prefix string, partitions int) map[int]bool {
	balancer := kafka.Murmur2Balancer{Consistent: true}
	parts := make([]int, partitions)
	for i := range parts {
		parts[i] = i
	}
	used := map[int]bool{}
	for c := range harness.BigChannels {
		used[balancer.Balance(kafka.Message{Key: []byte(fmt.Sprintf("%s%d", prefix, c))}, parts...)] = true
	}
	return used
}

// recordsOfSlot returns the records whose pgoutbox-source names slot.
func recordsOfSlot(recs []harness.Record, slot string) []harness.Record {
	var out []harness.Record
	for _, r := range recs {
		if parts := strings.Split(r.Headers["pgoutbox-source"], "/"); len(parts) == 4 && parts[2] == slot {
			out = append(out, r)
		}
	}
	return out
}

// produceRecords writes records to one partition of e's topic, acknowledged by all replicas.
func produceRecords(t *testing.T, e harness.Outbox, partition int, recs ...kafka.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(e.Brokers...), Timeout: 30 * time.Second}
	res, err := client.Produce(ctx, &kafka.ProduceRequest{
		Topic: e.Name, Partition: partition, RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(recs...),
	})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		t.Fatalf("produce to %s/%d: %v", e.Name, partition, err)
	}
}

// TestFault_KafkaAmbiguousProduce: the relay's (private) broker is frozen with SIGSTOP while
// the relay streams — a produce request sent just before sits unread in the broker's socket
// — for longer than the relay's request timeout (2s), then thawed with SIGCONT, three times.
// The relay's request times out: its outcome is unknown, and the broker does write it once
// thawed. The relay reads the partition's tail again before it retries, and sends only what is
// missing: every committed row arrives, in order, exactly once.
func TestFault_KafkaAmbiguousProduce(t *testing.T) {
	if testing.Short() {
		t.Skip("about a minute; skipped with -short")
	}
	t.Parallel()
	const partitions, freezes = 3, 3
	k := harness.StartPrivateKafka(t)
	e := harness.NewOutboxOn(t, harness.Services{DatabaseURL: harness.NeedPostgres(t), Brokers: k.Brokers}, partitions)
	w := harness.FaultWorkload{Workload: harness.Workload{Writers: 4, Rows: 10_000, Channels: 50, MaxTxnRows: 10}, Pause: 2 * time.Millisecond}
	harness.PrepareWorkload(t, e, w.Channels)

	relay := e.StartRelay(t, "PGOUTBOX_KAFKA_REQUEST_TIMEOUT=2s")
	relay.WaitLog("streaming started", time.Minute)
	run := harness.StartWorkload(t, e, w)
	harness.WaitTopicEnd(t, e, partitions, 1_000, 2*time.Minute)
	pid := k.Pid()
	thawed := false
	t.Cleanup(func() {
		if !thawed {
			_ = syscall.Kill(pid, syscall.SIGCONT) // never leave a frozen broker behind
		}
	})
	for i := range freezes {
		before := harness.TopicEnd(t, e, partitions)
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP the broker %d: %v", pid, err)
		}
		time.Sleep(5 * time.Second) // well past the 2s request timeout
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatalf("SIGCONT the broker %d: %v", pid, err)
		}
		t.Logf("freeze %d: broker stopped for 5s with %d records in the topic", i+1, before)
		harness.WaitTopicEnd(t, e, partitions, before+500, 2*time.Minute) // streaming again
	}
	thawed = true
	committed := run.Wait(t)
	recs := harness.FinishDelivery(t, e, committed, 3*time.Minute)
	if !relay.Running() {
		t.Fatalf("the relay exited: %v", relay.Err)
	}
	failed := relay.LogEntries("kafka write failed")
	relay.Stop(30 * time.Second)
	if len(failed) == 0 {
		t.Errorf("no Kafka write failed while the broker was frozen: the test proves nothing")
	}
	dups := checkDelivery(t, recs, committed, partitions)
	checkNoDuplicates(t, dups, len(recs))
	d := dedupeOf(relay)
	if d.warnings() > 0 {
		t.Errorf("the relay did not trust its own partitions' tails: %v", d.distrusted)
	}
	var errs []string
	for _, m := range failed {
		s, _ := m["error"].(string)
		errs = append(errs, s)
	}
	t.Logf("broker frozen %d times for 5s (request timeout 2s): %d failed-write log lines (%s); rows committed %d, records %d, duplicates %d, skipped as already in Kafka %d",
		freezes, len(failed), strings.Join(errs, " | "), committed.N, len(recs), dups, d.skipped)
}
