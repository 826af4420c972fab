package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/integration/harness"
	"github.com/pgoutbox/pgoutbox/pipeline"
	"github.com/pgoutbox/pgoutbox/record"
	"github.com/pgoutbox/pgoutbox/sink"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// TailReadResult is scenario 7 for one topic: what exactly-once costs a session's start. A
// session reads each partition's tail on the partition's first use, before its first send
// there. Timed from sink.New + BeginSession to Kafka's acknowledgement of one message per
// partition, by a fresh publisher (a restarted relay's), with the tail reads and without them
// (--exactly-once=false); the difference is their cost.
type TailReadResult struct {
	Partitions int `json:"partitions"`
	// Runs of each mode, alternated; the figures are their medians, in milliseconds.
	Runs          int     `json:"runs"`
	ExactlyOnceMs float64 `json:"exactly_once_ms"`
	AtLeastOnceMs float64 `json:"at_least_once_ms"`
	TailReadsMs   float64 `json:"tail_reads_ms"`
	// Skipped counts messages the tail reads found in Kafka already; it must stay 0 (each run
	// sends messages above the tails).
	Skipped int `json:"skipped"`
}

// tailReadPartitions are the topics of scenario 7: the benchmark's usual 3 partitions, and a
// wide topic.
var tailReadPartitions = []int{3, 64}

const tailReadRuns = 7

// tailReadSource is the stream of scenario 7's records (a made-up system, like a real one).
var tailReadSource = record.Source{SystemID: "7000000000000000007", Timeline: 1, Slot: "bench_s7",
	Routing: capture.RoutingOf("bench_s7", capture.DefaultTable())}

func (b *bench) tailReadScenario(ctx context.Context) error {
	for _, n := range tailReadPartitions {
		r, err := b.tailReads(ctx, n)
		if err != nil {
			return fmt.Errorf("%d partitions: %w", n, err)
		}
		b.res.TailReads = append(b.res.TailReads, r)
		b.progress("  %d partitions: first acknowledgement of every partition %.1f ms with tail reads, %.1f ms without: tail reads %.1f ms (median of %d)",
			n, r.ExactlyOnceMs, r.AtLeastOnceMs, r.TailReadsMs, r.Runs)
	}
	return nil
}

// tailReads measures one topic of n partitions, created for it and deleted afterwards.
func (b *bench) tailReads(ctx context.Context, n int) (TailReadResult, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	topic := fmt.Sprintf("bench_s7_%d_%s", n, hex.EncodeToString(rnd[:]))
	if err := harness.NewTopic(ctx, b.kafkaClient(), topic, n); err != nil {
		return TailReadResult{}, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := harness.DeleteTopic(dctx, b.brokers(), topic); err != nil {
			b.progress("cleanup: %v", err)
		}
	}()
	keys := keysPerPartition(n)
	// What a session of the stream hands the sink (no WAL bound: the positions are made up).
	src := record.Source{SystemID: tailReadSource.SystemID, Timeline: tailReadSource.Timeline, Slot: tailReadSource.Slot,
		Routing: tailReadSource.Routing, WALEnd: 1 << 60}
	lsn := pglogrepl.LSN(0x1_0000_0000)
	var skipped atomic.Int64 // told from the partitions' goroutines
	// round sends perPartition messages to each partition with a fresh publisher.
	round := func(exactlyOnce bool, perPartition int) (time.Duration, error) {
		began := time.Now()
		pub, err := sink.New(sink.Config{Brokers: b.brokers(), Topic: topic,
			OnSkipped: func(_ string, msgs []sink.Message) { skipped.Add(int64(len(msgs))) }}, zerolog.Nop())
		if err != nil {
			return 0, err
		}
		defer func() { _ = pub.Close() }()
		if exactlyOnce {
			pub.BeginSession(src)
		} else {
			pub.BeginSession(record.Source{})
		}
		queue := make(chan sink.Message, perPartition*len(keys))
		for range perPartition {
			for _, k := range keys {
				lsn += 400
				queue <- tailReadMessage(k, lsn)
			}
		}
		close(queue)
		acked := 0
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := pub.Run(rctx, queue, func(msgs []sink.Message) { acked += len(msgs) }); err != nil {
			return 0, err
		}
		if acked != cap(queue) {
			return 0, fmt.Errorf("kafka acknowledged %d of %d messages", acked, cap(queue))
		}
		return time.Since(began), nil
	}
	// Fill the partitions beyond the depth a tail read fetches (100 records), as after a long
	// run, and warm the broker up.
	if _, err := round(false, 150); err != nil {
		return TailReadResult{}, err
	}
	var on, off []time.Duration
	for i := range 2 * tailReadRuns {
		d, err := round(i%2 == 0, 1)
		if err != nil {
			return TailReadResult{}, err
		}
		if i%2 == 0 {
			on = append(on, d)
		} else {
			off = append(off, d)
		}
	}
	r := TailReadResult{Partitions: n, Runs: tailReadRuns, ExactlyOnceMs: medianMs(on), AtLeastOnceMs: medianMs(off), Skipped: int(skipped.Load())}
	r.TailReadsMs = r.ExactlyOnceMs - r.AtLeastOnceMs
	if r.Skipped != 0 {
		return r, errors.New("messages above every tail were skipped as already in Kafka")
	}
	return r, nil
}

// keysPerPartition returns one key per partition, each mapping to its own partition the way
// the sink routes (murmur2, as the Java client does).
func keysPerPartition(n int) []string {
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	balancer := kafka.Murmur2Balancer{Consistent: true}
	keys := make([]string, n)
	found := 0
	for k := 0; found < n; k++ {
		key := "ch-" + strconv.Itoa(k)
		if p := balancer.Balance(kafka.Message{Key: []byte(key)}, parts...); keys[p] == "" {
			keys[p] = key
			found++
		}
	}
	return keys
}

// tailReadMessage is the relay's record of a 1-row transaction committed at lsn on channel key.
func tailReadMessage(key string, lsn pglogrepl.LSN) sink.Message {
	k := int64(lsn)
	ev := capture.Event{XID: uint32(k), CommitLSN: lsn, CommitTime: time.Now(), ID: strconv.FormatInt(k, 10),
		Channel: key, Name: "bench.event", Payload: []byte(`{"n":` + strconv.FormatInt(k, 10) + `}`)}
	ev.Headers = capture.StandardHeaders(&ev, []byte(tailReadSource.Header()))
	return pipeline.ToMessage(uint64(k), &ev, ev.Size())
}

func medianMs(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[len(s)/2].Microseconds()) / 1000
}
