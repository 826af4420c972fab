package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/pgoutbox/pgoutbox/integration/harness"
	"github.com/pgoutbox/pgoutbox/record"
)

// BacklogResult is scenario 1 (1-row transactions) or 2 (100-row transactions): the same
// backlog read by pg_recvlogical and by pgoutbox.
type BacklogResult struct {
	Scenario     int        `json:"scenario"`
	RowsPerTxn   int        `json:"rows_per_txn"`
	Rows         int        `json:"rows"`
	WALBytes     int64      `json:"wal_bytes"`
	WriteSeconds float64    `json:"write_seconds"`
	Reference    Throughput `json:"pg_recvlogical"`
	Pgoutbox     Throughput `json:"pgoutbox"`
	Ratio        float64    `json:"ratio_pgoutbox_to_pg_recvlogical"`
	// StartupSeconds is the relay's process start → "streaming started" (checks, connections),
	// included in Pgoutbox.Seconds.
	StartupSeconds float64 `json:"pgoutbox_startup_seconds"`
	// AckedSeconds is the relay's process start → every row in the topic (acknowledged by
	// Kafka); Pgoutbox.Seconds goes on until the slot's confirmed position passed the last commit.
	AckedSeconds float64 `json:"pgoutbox_acked_seconds"`
	// RecordBytes is the mean Kafka record (key, value, headers) of a sample of the topic.
	RecordBytes float64 `json:"kafka_record_bytes"`
	PeakRSS     int64   `json:"pgoutbox_peak_rss_bytes"`
}

// Throughput is one reader of a backlog, timed from its process start to the end.
type Throughput struct {
	Seconds    float64 `json:"seconds"`
	RowsPerSec float64 `json:"rows_per_second"`
	WALMBps    float64 `json:"wal_mb_per_second"`             // the backlog's WAL span / Seconds
	KafkaMBps  float64 `json:"kafka_mb_per_second,omitempty"` // records' key+value+headers / Seconds
	CPU        CPU     `json:"cpu"`
}

// perRow is a CPU time in microseconds per row.
func perRow(seconds float64, rows int) float64 { return seconds * 1e6 / float64(rows) }

func throughput(rows int, walBytes int64, recordBytes float64, took time.Duration) Throughput {
	s := took.Seconds()
	return Throughput{Seconds: s, RowsPerSec: float64(rows) / s, WALMBps: float64(walBytes) / 1e6 / s,
		KafkaMBps: float64(rows) * recordBytes / 1e6 / s}
}

// backlogScenario writes the backlog with both slots in place, then lets pg_recvlogical and a
// fresh relay read it, one after the other.
func (b *bench) backlogScenario(ctx context.Context, scenario, rowsPerTxn int) error {
	return b.withOutbox(ctx, fmt.Sprintf("s%d", scenario), true, func(o *outbox) error {
		r := BacklogResult{Scenario: scenario, RowsPerTxn: rowsPerTxn, Rows: b.opts.rows}
		b.progress("  writing %d rows in %d-row transactions (relay stopped)", r.Rows, rowsPerTxn)
		w, err := b.writeBacklog(ctx, o.Name, r.Rows, rowsPerTxn, b.opts.writers)
		if err != nil {
			return fmt.Errorf("write backlog: %w", err)
		}
		r.WALBytes, r.WriteSeconds = w.WALBytes(), w.Seconds
		b.progress("  wrote %.1f MB of WAL in %.1fs; pg_recvlogical reads it to %s", float64(r.WALBytes)/1e6, w.Seconds, w.EndLSN)

		took, refCPU, err := b.recvLogical(ctx, o, w.EndLSN)
		if err != nil {
			return err
		}
		r.Reference = throughput(r.Rows, r.WALBytes, 0, took)
		r.Reference.CPU = refCPU
		if err := o.dropSlot(ctx, o.refSlot); err != nil { // it would pin the backlog's WAL meanwhile
			return err
		}
		b.progress("  pg_recvlogical: %.2fs, %.0f rows/s; CPU µs/row: pg_recvlogical %.1f, walsender %.1f; now pgoutbox",
			took.Seconds(), r.Reference.RowsPerSec, perRow(refCPU.Reader, r.Rows), perRow(refCPU.Walsender, r.Rows))

		var stopPerf func() error
		meter := b.meterCPU(ctx, o.Name)
		defer func() { _ = meter.stop() }() // a second stop is harmless
		relay, err := b.startRelay(o)
		if err != nil {
			return err
		}
		defer func() { _ = relay.stop() }()
		if b.opts.perf && scenario == 1 {
			stopPerf = b.startPerf(relay)
		}
		d, err := b.drain(ctx, relay, o.Name, r.Rows, w.EndLSN, 30*time.Minute, false)
		if stopPerf != nil {
			if perr := stopPerf(); perr != nil {
				b.progress("  perf: %v", perr)
			}
		}
		cpu := meter.stop()
		if err != nil {
			return err
		}
		if r.PeakRSS, err = relay.PeakRSS(); err != nil {
			return err
		}
		relayCPU, err := cpuTime(relay.Pid())
		if err != nil {
			return err
		}
		cpu.Reader = relayCPU.Seconds()
		if err := relay.stop(); err != nil {
			return err
		}
		r.StartupSeconds = relay.StartupTime().Seconds()
		r.AckedSeconds = d.acked.Seconds()
		if r.RecordBytes, err = b.sampleRecordBytes(ctx, o.Name, 1000); err != nil {
			return err
		}
		r.Pgoutbox = throughput(r.Rows, r.WALBytes, r.RecordBytes, d.confirmed)
		r.Pgoutbox.CPU = cpu
		r.Ratio = r.Pgoutbox.RowsPerSec / r.Reference.RowsPerSec
		b.progress("  pgoutbox: %.2fs (streaming after %.2fs, all acked at %.2fs), %.0f rows/s, %.2f × pg_recvlogical, peak RSS %.1f MB",
			d.confirmed.Seconds(), r.StartupSeconds, r.AckedSeconds, r.Pgoutbox.RowsPerSec, r.Ratio, float64(r.PeakRSS)/1e6)
		b.progress("  CPU µs/row: relay %.1f, walsender %.1f, Kafka broker %.1f", perRow(cpu.Reader, r.Rows), perRow(cpu.Walsender, r.Rows), perRow(cpu.Kafka, r.Rows))
		b.res.Backlog = append(b.res.Backlog, r)
		b.res.Memory = append(b.res.Memory, MemoryResult{Scenario: scenario,
			What: fmt.Sprintf("backlog of %d rows, %d-row transactions", r.Rows, rowsPerTxn), PeakRSS: r.PeakRSS})
		return nil
	})
}

// drained is when a relay finished a backlog, from its process start.
type drained struct {
	acked     time.Duration // the topic holds every row (Kafka acknowledged them)
	confirmed time.Duration // and the slot's confirmed_flush_lsn reached the end of the backlog
}

// drain polls the topic's end offsets and the slot until the topic holds rows records and the
// slot's confirmed position reached end, then checks that the topic holds each row exactly once
// (records == rows, no position twice) and that the relay counts rows rows acknowledged. (Polling the relay's /metrics instead cost it 6% of its CPU.)
//
// messages: the events are WAL-only messages (pgoutbox_send with the outbox's own prefix), which
// carry no outbox id.
func (b *bench) drain(ctx context.Context, p *relayProc, slot string, rows int, end pglogrepl.LSN, timeout time.Duration, messages bool) (drained, error) {
	var d drained
	conn, err := pgx.Connect(ctx, b.opts.databaseURL)
	if err != nil {
		return d, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	client := b.kafkaClient()
	err = harness.Eventually(ctx, timeout, 50*time.Millisecond, func(ctx context.Context) error {
		if err := p.Exited(); err != nil {
			return harness.Stop(err)
		}
		if d.acked == 0 {
			inTopic, err := harness.CountRecords(ctx, client, slot, partitions)
			if err != nil {
				return err
			}
			// End offsets count the relay's barrier records too: one per partition at its start.
			if inTopic < int64(rows+partitions) {
				return fmt.Errorf("the topic holds %d of %d rows", inTopic, rows)
			}
			d.acked = time.Since(p.Started)
		}
		confirmed, err := harness.ReadSlotConfirmed(ctx, conn, slot)
		if err != nil {
			return harness.Stop(err)
		}
		if confirmed < end {
			return fmt.Errorf("the slot is confirmed at %s, before the end of the backlog %s", confirmed, end)
		}
		d.confirmed = time.Since(p.Started)
		return nil
	})
	if err != nil {
		return d, err
	}
	m, err := p.scrape(ctx)
	if err != nil {
		return d, err
	}
	// The topic first: a duplicate in Kafka is a broken promise, a miscount only a wrong figure.
	if err := b.checkTopic(ctx, slot, rows, messages); err != nil {
		return d, fmt.Errorf("%w (relay: %s)", err, relayCounts(m))
	}
	if n := m["pgoutbox_events_published_total"]; n != float64(rows) {
		return d, fmt.Errorf("the relay counts %.0f rows acknowledged, want %d; the topic holds each row exactly once (relay: %s)", n, rows, relayCounts(m))
	}
	return d, nil
}

// relayCounts is what explains a count that is off: the relay's sessions, skipped rows and
// failed requests.
func relayCounts(m map[string]float64) string {
	var errs float64
	for k, v := range m {
		if strings.HasPrefix(k, "pgoutbox_publish_errors_total") {
			errs += v
		}
	}
	return fmt.Sprintf("%.0f replication sessions, %.0f rows skipped as already in Kafka, %.0f failed produce requests",
		m["pgoutbox_replication_connects_total"], m[`pgoutbox_events_skipped_total{reason="already_in_kafka"}`], errs)
}

// checkTopic reads the whole topic back and checks that it holds each of the rows rows
// exactly once: not merely at least once.
func (b *bench) checkTopic(ctx context.Context, topic string, rows int, messages bool) error {
	c := newTopicCheck(rows)
	c.messages = messages
	if err := harness.ScanTopic(ctx, b.brokers(), topic, c.add); err != nil {
		return fmt.Errorf("read the topic back: %w", err)
	}
	return c.err()
}

// topicCheck counts a benchmark topic's records: a position seen twice is a duplicate (the
// exactly-once promise broken), a record that is no benchmark row (its key is not a ch-N
// channel, or it has no outbox id: a WAL-only message, unless messages) came from another process.
type topicCheck struct {
	want             int
	messages         bool // the outbox's events are WAL-only messages: no outbox id
	records, noPos   int
	dups, foreign    int
	dupAt, foreignAt []string // the first few, for the error
	seen             map[string]struct{}
}

func newTopicCheck(rows int) *topicCheck {
	return &topicCheck{want: rows, seen: make(map[string]struct{}, rows)}
}

func (c *topicCheck) add(r harness.Record) {
	c.records++
	at := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
	if !strings.HasPrefix(r.Key, "ch-") || (r.Headers[record.HeaderID] == "") != c.messages {
		c.foreign++
		if len(c.foreignAt) < 3 {
			c.foreignAt = append(c.foreignAt, fmt.Sprintf("%s key %q", at, r.Key))
		}
	}
	pos, ok := r.Headers[record.HeaderPosition]
	if !ok {
		c.noPos++
		return
	}
	if _, ok := c.seen[pos]; ok {
		c.dups++
		if len(c.dupAt) < 3 {
			c.dupAt = append(c.dupAt, pos+" at "+at)
		}
		return
	}
	c.seen[pos] = struct{}{}
}

// err says what is wrong with the topic; nil when it holds want records, each once.
func (c *topicCheck) err() error {
	var problems []string
	if c.dups > 0 {
		problems = append(problems, fmt.Sprintf("%d duplicates (%s)", c.dups, strings.Join(c.dupAt, ", ")))
	}
	if c.noPos > 0 {
		problems = append(problems, fmt.Sprintf("%d without a %s header", c.noPos, record.HeaderPosition))
	}
	if c.foreign > 0 {
		problems = append(problems, fmt.Sprintf("%d that are no benchmark row (%s): another process's events", c.foreign, strings.Join(c.foreignAt, ", ")))
	}
	if len(problems) == 0 && c.records == c.want {
		return nil
	}
	return fmt.Errorf("the topic holds %d records, want %d, one per row: %s", c.records, c.want,
		strings.Join(append(problems, fmt.Sprintf("%d distinct positions", len(c.seen))), "; "))
}
