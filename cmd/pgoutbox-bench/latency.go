package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// LatencyResult is scenario 4 at one write rate.
type LatencyResult struct {
	Rate         int     `json:"rate_target_rows_per_second"`
	RateAchieved float64 `json:"rate_achieved_rows_per_second"`
	Seconds      float64 `json:"seconds"`
	Rows         int     `json:"rows"`
	Writers      int     `json:"writer_connections"`
	// Receive is commit → the relay has the transaction, from the relay's histogram
	// pgoutbox_commit_to_receive_seconds: the part of Ack spent before Kafka (server, walsender,
	// network, decoding).
	Receive Quantiles `json:"commit_to_receive"`
	// Ack is commit → Kafka acknowledgement (acks=all), from the relay's histogram
	// pgoutbox_commit_to_ack_seconds over the measured phase.
	Ack Quantiles `json:"commit_to_ack"`
	// Consumer is commit → arrival at an independent consumer fetching the topic.
	Consumer Quantiles `json:"commit_to_consumer"`
	PeakRSS  int64     `json:"pgoutbox_peak_rss_bytes"`
	// LoadAvg1 is the machine's 1-minute load average at the end of the rate's run: the writer,
	// PostgreSQL, Kafka and the relay share the same cores.
	LoadAvg1 float64 `json:"load_average_1m"`
	// CPU is what the relay, the slot's walsender and the broker used over the measured phase;
	// MachineBusy the share of all cores busy meanwhile (from /proc/stat): near 1, everything
	// waits for a core and latency says more about the machine than about the relay.
	CPU         CPU     `json:"cpu"`
	MachineBusy float64 `json:"machine_busy_share"`
}

const (
	ackHistogram     = "pgoutbox_commit_to_ack_seconds"
	receiveHistogram = "pgoutbox_commit_to_receive_seconds"
)

// latencyScenario runs a fresh relay and an independent consumer, warms up for a second, then
// commits 1-row transactions at rate rows/s for the configured time.
func (b *bench) latencyScenario(ctx context.Context, rate int) error {
	return b.withOutbox(ctx, fmt.Sprintf("lat%d", rate), false, func(o *outbox) error {
		relay, err := b.startRelay(o)
		if err != nil {
			return err
		}
		defer func() { _ = relay.stop() }()
		if err := relay.WaitStreaming(ctx, time.Minute); err != nil {
			return err
		}
		cons := b.startConsumer(ctx, o.Name)
		defer cons.stop()
		w := b.newPacedWriter(o.Name, rate)
		defer w.close()
		if err := w.connect(ctx); err != nil {
			return err
		}

		// Warm-up: connections, statements, metadata and the consumer's fetches are in place.
		warm, _, err := w.run(ctx, 1, time.Second)
		if err != nil {
			return err
		}
		if err := cons.wait(ctx, warm, false, time.Minute); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		time.Sleep(500 * time.Millisecond)
		before, err := relay.scrape(ctx)
		if err != nil {
			return err
		}
		cons.measureFrom(time.Now())
		meter := b.meterCPU(ctx, o.Name)
		relay0, _ := cpuTime(relay.Pid())
		busy0 := readMachineCPU()

		b.progress("  writing 1-row transactions at %d rows/s for %s over %d connections", rate, b.opts.latencyFor, w.conns)
		rows, took, err := w.run(ctx, int64(warm)+1, b.opts.latencyFor)
		if err != nil {
			return err
		}
		if err := cons.wait(ctx, rows, true, 2*time.Minute); err != nil {
			meter.stop()
			return err
		}
		cpu := meter.stop()
		relay1, _ := cpuTime(relay.Pid())
		cpu.Reader = (relay1 - relay0).Seconds()
		busy := readMachineCPU().busySince(busy0)
		if err := relay.Exited(); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond) // the relay observes its histogram right after the ack
		after, err := relay.scrape(ctx)
		if err != nil {
			return err
		}
		r := LatencyResult{Rate: rate, RateAchieved: float64(rows) / took.Seconds(), Seconds: took.Seconds(), Rows: rows, Writers: w.conns,
			CPU: cpu, MachineBusy: busy}
		r.LoadAvg1 = loadAverage()
		r.Ack = histogramQuantiles(minus(histogram(after, ackHistogram), histogram(before, ackHistogram)),
			"relay histogram "+ackHistogram+": interpolated within buckets 1,2,5,10,20,50,100 ms…; max = the bucket's upper bound")
		r.Receive = histogramQuantiles(minus(histogram(after, receiveHistogram), histogram(before, receiveHistogram)),
			"relay histogram "+receiveHistogram+" (per transaction): interpolated within buckets; max = the bucket's upper bound")
		r.Consumer = exactQuantiles(cons.latencies(),
			"independent consumer, arrival − record timestamp (commit time truncated to the millisecond: up to +1 ms)")
		if r.PeakRSS, err = relay.PeakRSS(); err != nil {
			return err
		}
		if err := relay.stop(); err != nil {
			return err
		}
		b.progress("  achieved %.0f rows/s; commit→receive p50 %.2f p99 %.2f ms; commit→ack p50 %.2f p99 %.2f ms (histogram, %d rows); commit→consumer p50 %.2f p99 %.2f p99.9 %.2f max %.2f ms; peak RSS %.1f MB; load average %.2f; CPU µs/row: relay %.1f, walsender %.1f, Kafka broker %.1f; machine %.0f%% busy",
			r.RateAchieved, r.Receive.P50, r.Receive.P99, r.Ack.P50, r.Ack.P99, r.Ack.Count, r.Consumer.P50, r.Consumer.P99, r.Consumer.P999, r.Consumer.Max, float64(r.PeakRSS)/1e6, r.LoadAvg1,
			perRow(cpu.Reader, rows), perRow(cpu.Walsender, rows), perRow(cpu.Kafka, rows), 100*busy)
		b.res.Latency = append(b.res.Latency, r)
		b.res.Memory = append(b.res.Memory, MemoryResult{Scenario: 4,
			What: fmt.Sprintf("steady load, %d rows/s for %s", rate, b.opts.latencyFor), PeakRSS: r.PeakRSS})
		return nil
	})
}

// pacedWriter commits 1-row transactions at a fixed rate over a few connections.
type pacedWriter struct {
	b     *bench
	table string
	rate  int
	conns int
	pool  []*pgconn.PgConn
}

func (b *bench) newPacedWriter(table string, rate int) *pacedWriter {
	// Rows due in the same millisecond go to one connection as one pipeline of 1-row
	// transactions: a round trip per row would not keep up on two busy cores.
	return &pacedWriter{b: b, table: table, rate: rate, conns: 4}
}

func (w *pacedWriter) connect(ctx context.Context) error {
	for range w.conns {
		conn, err := w.b.writerConn(ctx, w.table)
		if err != nil {
			return err
		}
		w.pool = append(w.pool, conn)
	}
	return nil
}

func (w *pacedWriter) close() {
	for _, c := range w.pool {
		_ = c.Close(context.Background())
	}
}

// run commits rows first, first+1, … at the rate for d, one row per transaction, and returns
// how many it committed and how long that took. Row i is due at start + i/rate; every
// millisecond the due rows go to a free connection, and wait when every connection is busy.
func (w *pacedWriter) run(ctx context.Context, first int64, d time.Duration) (int, time.Duration, error) {
	total := int(float64(w.rate) * d.Seconds())
	due := make(chan [][2]int64, 1000)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, conn := range w.pool {
		wg.Go(func() {
			for txns := range due {
				if err := pipelineTxns(ctx, conn, txns); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
			}
		})
	}
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	sent := 0
pace:
	for sent < total {
		select {
		case <-ctx.Done():
			break pace
		case now := <-tick.C:
			var txns [][2]int64
			for target := min(total, int(now.Sub(start).Seconds()*float64(w.rate))+1); sent < target; sent++ {
				k := first + int64(sent)
				txns = append(txns, [2]int64{k, k})
			}
			if len(txns) == 0 {
				continue
			}
			select {
			case due <- txns:
			case <-ctx.Done():
				break pace
			}
		}
	}
	tick.Stop()
	close(due)
	wg.Wait()
	took := time.Since(start)
	if firstErr != nil {
		return sent, took, firstErr
	}
	return sent, took, ctx.Err()
}
