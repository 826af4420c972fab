package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/pipeline"
	"github.com/pgoutbox/pgoutbox/record"
	"github.com/pgoutbox/pgoutbox/sink"
	"github.com/rs/zerolog"
)

// CeilingResult is scenario 3: the backlog's records produced by the relay's own publisher
// alone, with the relay's default settings and no PostgreSQL: the most pgoutbox could do here.
type CeilingResult struct {
	Rows        int     `json:"rows"`
	Seconds     float64 `json:"seconds"`
	RowsPerSec  float64 `json:"rows_per_second"`
	KafkaMBps   float64 `json:"kafka_mb_per_second"`
	RecordBytes float64 `json:"kafka_record_bytes"`
	// CPU: Reader is this benchmark process (the publisher and the making of the records).
	CPU CPU `json:"cpu"`
	// Ratios of pgoutbox's rate in scenarios 1 and 2 to this one; 0 when not run.
	RatioScenario1 float64 `json:"ratio_pgoutbox_s1_to_ceiling"`
	RatioScenario2 float64 `json:"ratio_pgoutbox_s2_to_ceiling"`
}

func (b *bench) ceilingScenario(ctx context.Context) error {
	return b.withOutbox(ctx, "s3", false, func(o *outbox) error {
		pub, err := sink.New(sink.Config{
			Brokers: b.brokers(),
			Topic:   o.Name,
			// The relay's defaults: sink.Config fills the same constants pgoutbox's flags use.
		}, zerolog.Nop())
		if err != nil {
			return err
		}
		defer func() { _ = pub.Close() }()
		rows := b.opts.rows
		kpid := kafkaPID(b.root)
		self0, _ := cpuTime(os.Getpid())
		kafka0, _ := cpuTime(kpid)
		took, err := b.produceAll(ctx, pub, rows)
		if err != nil {
			return err
		}
		self1, _ := cpuTime(os.Getpid())
		kafka1, _ := cpuTime(kpid)
		c := CeilingResult{Rows: rows, Seconds: took.Seconds(), RowsPerSec: float64(rows) / took.Seconds(),
			CPU: CPU{Reader: (self1 - self0).Seconds(), Kafka: (kafka1 - kafka0).Seconds()}}
		if c.RecordBytes, err = b.sampleRecordBytes(ctx, o.Name, 1000); err != nil {
			return err
		}
		c.KafkaMBps = float64(rows) * c.RecordBytes / 1e6 / took.Seconds()
		b.res.Ceiling = &c
		b.progress("  sink.Publisher alone: %.2fs, %.0f rows/s, %.1f MB/s", c.Seconds, c.RowsPerSec, c.KafkaMBps)
		return nil
	})
}

// produceAll publishes rows records through pub as the relay does: a queue and an in-flight
// window of the relay's default size, one transaction per row. It returns the time until
// Kafka acknowledged the last one.
func (b *bench) produceAll(ctx context.Context, pub *sink.Publisher, rows int) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	queue := make(chan sink.Message, pipeline.DefaultMaxInflightEvents)
	window := make(chan struct{}, pipeline.DefaultMaxInflightEvents)
	acked := 0
	began := time.Now()
	go func() {
		defer close(queue)
		lsn := pglogrepl.LSN(0x1_0000_0000)
		for k := int64(1); k <= int64(rows); k++ {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			lsn += 400 // about a 1-row transaction's WAL
			queue <- b.benchMessage(k, lsn, time.Now())
		}
	}()
	err := pub.Run(ctx, queue, func(msgs []sink.Message) {
		acked += len(msgs)
		for range msgs {
			<-window
		}
	})
	took := time.Since(began)
	if err != nil {
		return took, err
	}
	if acked != rows {
		return took, fmt.Errorf("kafka acknowledged %d of %d records", acked, rows)
	}
	return took, nil
}

// benchSource is the source header of the benchmark's records: a made-up system, like a real one.
var benchSource = []byte(record.Source{SystemID: "7000000000000000001", Timeline: 1, Slot: "bench_s3",
	Routing: capture.RoutingOf("bench_s3", capture.DefaultTable())}.Header())

// benchMessage is the record the relay makes of backlog row k, alone in a transaction
// committed at lsn: the relay's own headers and mapping (capture.StandardHeaders,
// pipeline.ToMessage).
func (b *bench) benchMessage(k int64, lsn pglogrepl.LSN, commit time.Time) sink.Message {
	ev := capture.Event{XID: uint32(k), CommitLSN: lsn, CommitTime: commit, ID: strconv.FormatInt(k, 10),
		Channel: "ch-" + strconv.FormatInt(k%int64(b.opts.channels), 10), Name: "bench.event",
		Payload: benchPayload(k, b.opts.channels)}
	ev.Headers = capture.StandardHeaders(&ev, benchSource)
	return pipeline.ToMessage(uint64(k), &ev, ev.Size())
}
