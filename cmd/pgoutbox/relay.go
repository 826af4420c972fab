package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/checkpoint"
	"github.com/pgoutbox/pgoutbox/sink"
	"github.com/rs/zerolog"
)

// relay is `pgoutbox run`: checks, then streaming sessions until shutdown. A session is one
// replication connection with its own ledger and queue; a lost connection or a slot held by
// another instance ends the session and a new one starts after a backoff, from the slot's
// confirmed position (rows after it are sent again: duplicates only, never a gap).
type relay struct {
	cfg     *Config
	base    zerolog.Logger // without a component: each package adds its own
	log     zerolog.Logger
	table   capture.Table
	pub     *sink.Publisher
	metrics *metrics
	health  *health
}

func runRelay(ctx context.Context, cfg *Config, log zerolog.Logger) error {
	table, err := cfg.Table()
	if err != nil {
		return err
	}
	m := newMetrics()
	pub, err := sink.New(sink.Config{
		OnError:          m.publishError,
		DeadLetterTopic:  cfg.DeadLetter(),
		OnDeadLetter:     func(sink.Message, error) { m.deadLettered.WithLabelValues("kafka").Inc() },
		Brokers:          cfg.Brokers(),
		Topic:            cfg.Topic,
		MaxBatchMessages: cfg.KafkaBatchMessages,
		MaxRequestBytes:  cfg.KafkaRequestBytes,
		RequestTimeout:   cfg.KafkaRequestTimeout,
		BackoffMax:       cfg.KafkaBackoffMax,
		Compression:      cfg.KafkaCompression,
		Security:         cfg.kafkaSecurity(),
	}, log)
	if err != nil {
		return err
	}
	defer func() { _ = pub.Close() }()
	r := &relay{cfg: cfg, base: log, log: log.With().Str("component", "relay").Logger(), table: table, pub: pub,
		metrics: m, health: &health{reason: "starting"}}
	stopHTTP, err := serveHTTP(ctx, cfg.HTTPAddr, r.metrics, r.health, r.log)
	if err != nil {
		return err
	}
	defer stopHTTP()
	if err := r.preflight(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// The monitor and the streaming loop stop together: a lost slot ends streaming, and a
	// streaming error ends the monitor.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	mon := &monitor{cfg: cfg, th: cfg.thresholds(), log: log.With().Str("component", "monitor").Logger(), metrics: r.metrics, health: r.health}
	monDone := make(chan error, 1)
	go func() {
		err := mon.run(ctx)
		if err != nil {
			cancel(err)
		}
		monDone <- err
	}()
	err = r.loop(ctx)
	cancel(err)
	if monErr := <-monDone; monErr != nil {
		return monErr
	}
	return err
}

// preflight checks everything that a restart would not fix, so that a misconfiguration stops
// the process at once with a message naming the fix, instead of retrying forever.
func (r *relay) preflight(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, r.cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("%w (database %s)", capture.ClassifyConnectError(err), redactURL(r.cfg.DatabaseURL))
	}
	defer func() { _ = conn.Close(context.Background()) }()

	info, err := capture.CheckServer(cctx, conn)
	if err != nil {
		return err
	}
	if info.MaxSlotWALKeepSize < 0 {
		r.log.Warn().Msg("max_slot_wal_keep_size is -1 (unbounded): if this relay stalls, its slot retains WAL until the disk is full; " +
			"set max_slot_wal_keep_size to a size the disk can spare (e.g. ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'; SELECT pg_reload_conf())")
	}
	if w := info.IdleSlotTimeoutWarning(); w != "" {
		r.log.Warn().Dur("idle_replication_slot_timeout", info.IdleSlotTimeout).Msg(w)
	}
	if err := errors.Join(
		capture.CheckTable(cctx, conn, r.table),
		capture.CheckPublication(cctx, conn, r.cfg.Publication, r.table),
	); err != nil {
		return err
	}
	if _, err := capture.CheckSlot(cctx, conn, r.cfg.Slot); err != nil {
		return err
	}
	if _, err := r.pub.Partitions(cctx, r.cfg.Topic); err != nil {
		return err
	}
	if dlq := r.cfg.DeadLetter(); dlq != "" {
		if _, err := r.pub.Partitions(cctx, dlq); err != nil {
			return fmt.Errorf("dead-letter topic (--on-bad-row=dead-letter): %w", err)
		}
	}
	return nil
}

// loop runs sessions until ctx is done or an error that a retry cannot fix.
func (r *relay) loop(ctx context.Context) error {
	wait := 500 * time.Millisecond
	for {
		started := time.Now()
		err := r.session(ctx)
		if err != nil {
			r.health.set(false, err.Error())
		}
		pause := wait
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, capture.ErrSlotInUse):
			// A hot standby polls at a steady pace instead of backing off: when the active
			// instance dies, its slot is free at once and should be taken over within seconds.
			pause = min(standbyPoll, r.cfg.ReconnectMax)
			r.log.Info().Err(err).Dur("retry_in", pause).Msg("standing by: another instance streams the slot")
		case errors.Is(err, capture.ErrConnection):
			r.log.Warn().Err(err).Dur("retry_in", wait).Msg("replication connection lost; reconnecting")
			wait = min(wait*2, r.cfg.ReconnectMax)
		default:
			return err
		}
		if time.Since(started) > time.Minute {
			wait = 500 * time.Millisecond // it worked for a while: start the backoff over
		}
		// Jitter within [pause/2, pause], so that --reconnect-max really is the longest wait.
		jittered := pause/2 + time.Duration(rand.Int64N(int64(pause)/2+1)) //nolint:gosec // jitter needs no cryptographic randomness
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(jittered):
		}
	}
}

// standbyPoll is how often an instance that finds its slot in use tries again.
const standbyPoll = 2 * time.Second

// session streams over one replication connection. On return, the sink has drained (or given up
// after the shutdown timeout) and the last confirmed position was sent to the server.
func (r *relay) session(ctx context.Context) error {
	stream := capture.NewStream(capture.StreamConfig{
		DatabaseURL:     r.cfg.DatabaseURL,
		Slot:            r.cfg.Slot,
		Publication:     r.cfg.Publication,
		Table:           r.table,
		StatusInterval:  r.cfg.StatusInterval,
		DeadLetterTopic: r.cfg.DeadLetter(),
	}, r.base.With().Str("topic", r.cfg.Topic).Logger()) // its "streaming started" line names the topic
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stream.Close(cctx); err != nil {
			r.log.Warn().Err(err).Msg("final status update failed; the next start resends what was not confirmed")
		}
	}()
	start, err := stream.Open(ctx)
	if err != nil {
		return err
	}
	out := newOutput(start, checkpoint.Limits{MaxEvents: r.cfg.MaxInflightEvents, MaxBytes: r.cfg.MaxInflightBytes})
	out.onDeadLetter = func() { r.metrics.deadLettered.WithLabelValues("decode").Inc() }
	r.metrics.session.Store(out)
	r.metrics.stream.Store(stream)
	r.metrics.sessions.Inc()
	r.health.set(true, "")

	streamCtx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	sinkCtx, stopSink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSink()

	sinkDone := make(chan error, 1)
	go func() { sinkDone <- r.deliver(ctx, sinkCtx, out, stopStream) }()
	streamDone := make(chan error, 1)
	go func() { streamDone <- stream.Run(streamCtx, out) }()

	var streamErr, sinkErr error
	sinkFinished := false
	select {
	case streamErr = <-streamDone:
	case sinkErr = <-sinkDone:
		sinkFinished = true
		stopStream()
		streamErr = <-streamDone
	}
	// The stream was the only sender: closing the queue lets the sink drain and return.
	close(out.queue)
	if !sinkFinished {
		sinkErr = r.drain(sinkDone, stopSink)
	}
	if sinkErr != nil && !errors.Is(sinkErr, context.Canceled) {
		return sinkErr
	}
	if errors.Is(streamErr, context.Canceled) {
		return nil
	}
	return streamErr
}

// deliver runs the sink — and, with --retention=delete-after-publish, the janitor between the
// sink's acknowledgements and the ledger — until the queue is drained or sinkCtx is done.
func (r *relay) deliver(ctx, sinkCtx context.Context, out *output, stopStream context.CancelFunc) error {
	ack := func(msgs []sink.Message) {
		if err := out.acked(msgs); err != nil {
			r.log.Error().Err(err).Msg("ledger rejected an acknowledgement; stopping")
			stopStream()
		}
	}
	if r.cfg.Retention != "delete-after-publish" {
		return r.pub.Run(sinkCtx, out.queue, func(msgs []sink.Message) {
			r.metrics.published(msgs)
			ack(msgs)
		})
	}
	j := newJanitor(r.cfg.DatabaseURL, r.table, r.cfg.JanitorBatch, r.base, func(msgs []sink.Message) error {
		ack(msgs)
		return nil
	})
	if err := j.prepare(ctx); err != nil {
		stopStream()
		return err
	}
	jctx, stopJanitor := context.WithCancel(sinkCtx)
	defer stopJanitor()
	janitorDone := make(chan error, 1)
	go func() {
		err := j.run(jctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			r.log.Error().Err(err).Msg("retention failed; stopping")
			stopStream() // nothing more can be confirmed: stop reading
		}
		janitorDone <- err
	}()
	sinkErr := r.pub.Run(sinkCtx, out.queue, func(msgs []sink.Message) {
		r.metrics.published(msgs)
		j.acked(msgs)
	})
	close(j.in) // the sink was its only sender: the janitor finishes what it holds and returns
	janErr := <-janitorDone
	if janErr != nil && !errors.Is(janErr, context.Canceled) {
		stopStream()
		return janErr
	}
	return sinkErr
}

// drain waits for the sink to deliver what is in flight, at most the shutdown timeout.
func (r *relay) drain(sinkDone <-chan error, stopSink context.CancelFunc) error {
	timer := time.NewTimer(r.cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case err := <-sinkDone:
		return err
	case <-timer.C:
		r.log.Warn().Dur("timeout", r.cfg.ShutdownTimeout).
			Msg("in-flight writes not acknowledged in time; they stay unconfirmed and are sent again at the next start")
		stopSink()
		return <-sinkDone
	}
}
