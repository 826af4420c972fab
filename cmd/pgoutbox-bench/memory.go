package main

import (
	"context"
	"fmt"
	"time"
)

// MemoryResult is the peak resident memory (VmHWM) of the fresh relay process of one scenario.
type MemoryResult struct {
	Scenario int    `json:"scenario"`
	What     string `json:"what"`
	PeakRSS  int64  `json:"peak_rss_bytes"`
}

// BigTxnResult is scenario 5's large transaction: one transaction of many rows, committed while
// the relay streams.
type BigTxnResult struct {
	Rows         int     `json:"rows"`
	WriteSeconds float64 `json:"write_seconds"`
	// Seconds is the commit → every row acknowledged and the slot confirmed past the commit.
	Seconds    float64 `json:"seconds"`
	RowsPerSec float64 `json:"rows_per_second"`
	PeakRSS    int64   `json:"pgoutbox_peak_rss_bytes"`
}

// bigTxnScenario commits one transaction of --big-rows rows while a fresh relay streams, and
// reads the relay's peak memory once the slot is confirmed past it: the in-flight window, not
// the transaction, must bound it.
func (b *bench) bigTxnScenario(ctx context.Context) error {
	return b.withOutbox(ctx, "bigtxn", false, func(o *outbox) error {
		relay, err := b.startRelay(o)
		if err != nil {
			return err
		}
		defer func() { _ = relay.stop() }()
		if err := relay.WaitStreaming(ctx, time.Minute); err != nil {
			return err
		}
		rows := b.opts.bigRows
		b.progress("  committing one transaction of %d rows while the relay streams", rows)
		w, err := b.writeBacklog(ctx, o.Name, rows, rows, 1)
		if err != nil {
			return err
		}
		committed := time.Now()
		// drain measures from the relay's start: make it measure from the commit.
		d, err := b.drain(ctx, relay, o.Name, rows, w.EndLSN, 30*time.Minute, false)
		if err != nil {
			return err
		}
		r := BigTxnResult{Rows: rows, WriteSeconds: w.Seconds,
			Seconds: (d.confirmed - committed.Sub(relay.Started)).Seconds()}
		r.RowsPerSec = float64(rows) / r.Seconds
		if r.PeakRSS, err = relay.PeakRSS(); err != nil {
			return err
		}
		if err := relay.stop(); err != nil {
			return err
		}
		b.progress("  written in %.1fs; relayed %.1fs after the commit (%.0f rows/s); peak RSS %.1f MB",
			r.WriteSeconds, r.Seconds, r.RowsPerSec, float64(r.PeakRSS)/1e6)
		b.res.BigTxn = &r
		b.res.Memory = append(b.res.Memory, MemoryResult{Scenario: 5,
			What: fmt.Sprintf("one transaction of %d rows", rows), PeakRSS: r.PeakRSS})
		return nil
	})
}
