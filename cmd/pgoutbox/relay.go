package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/checkpoint"
	"github.com/pgoutbox/pgoutbox/pipeline"
	"github.com/pgoutbox/pgoutbox/sink"
	"github.com/rs/zerolog"
)

// runRelay is `pgoutbox run`: it builds the pipeline's parts from the configuration, checks
// everything a restart would not fix, serves /metrics and health, and runs the relay until
// shutdown (nil) or a failure (an error: exit 1).
func runRelay(ctx context.Context, cfg *Config, log zerolog.Logger) error {
	table, err := cfg.Table()
	if err != nil {
		return err
	}
	m := newMetrics()
	pub, err := sink.New(cfg.sinkConfig(m), log)
	if err != nil {
		return err
	}
	defer func() { _ = pub.Close() }()

	pl, err := pipeline.New(cfg.pipelineConfig(table), pipeline.Deps{
		NewStream: func() pipeline.Stream {
			// Its "streaming started" line names the topic.
			return capture.NewStream(cfg.streamConfig(table), log.With().Str("topic", cfg.Topic).Logger())
		},
		Publisher:   pub,
		Slots:       &slotReader{catalog: catalog{url: cfg.DatabaseURL}, slot: cfg.Slot},
		Publication: &publicationReader{catalog: catalog{url: cfg.DatabaseURL}, publication: cfg.Publication, table: table},
		Gaps:        &gapRecorder{catalog: catalog{url: cfg.DatabaseURL}, table: table},
		Deleter:     cfg.deleter(table),
		Observer:    m,
		Log:         log,
	})
	if err != nil {
		return err
	}
	m.progress = pl.Progress

	stopHTTP, err := serveHTTP(ctx, cfg.HTTPAddr, m, log.With().Str("component", "http").Logger())
	if err != nil {
		return err
	}
	defer stopHTTP()
	if err := preflight(ctx, cfg, table, pub, log.With().Str("component", "relay").Logger()); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return pl.Run(ctx)
}

func (c *Config) pipelineConfig(table capture.Table) pipeline.Config {
	return pipeline.Config{
		Slot:            c.Slot,
		Publication:     c.Publication,
		Table:           table,
		Window:          checkpoint.Limits{MaxEvents: c.MaxInflightEvents, MaxBytes: c.MaxInflightBytes},
		ShutdownTimeout: c.ShutdownTimeout,
		ReconnectMax:    c.ReconnectMax,
		MonitorInterval: c.MonitorInterval,
		Thresholds:      c.thresholds(),
		JanitorBatch:    c.JanitorBatch,
		AtLeastOnce:     !c.ExactlyOnce,
	}
}

func (c *Config) streamConfig(table capture.Table) capture.StreamConfig {
	return capture.StreamConfig{
		DatabaseURL:       c.DatabaseURL,
		Slot:              c.Slot,
		Publication:       c.Publication,
		Table:             table,
		StatusInterval:    c.StatusInterval,
		DeadLetterBadRows: c.DeadLetter() != "",
		MessagePrefix:     c.MessagePrefix,
		EventsFrom:        c.From(),
	}
}

func (c *Config) sinkConfig(m *metrics) sink.Config {
	return sink.Config{
		OnError:          m.publishError,
		DeadLetterTopic:  c.DeadLetter(),
		OnDeadLetter:     func(_ sink.Message, stage string) { m.deadLettered.WithLabelValues(stage).Inc() },
		OnSkipped:        func(reason string, msgs []sink.Message) { m.skipped.WithLabelValues(reason).Add(float64(len(msgs))) },
		OnTopicWait:      m.topicWait,
		MissingTopicWait: c.MissingTopicTimeout,
		Brokers:          c.Brokers(),
		Topic:            c.Topic,
		MaxBatchMessages: c.KafkaBatchMessages,
		MaxRequestBytes:  c.KafkaRequestBytes,
		RequestTimeout:   c.KafkaRequestTimeout,
		Linger:           c.KafkaLinger,
		BackoffMax:       c.KafkaBackoffMax,
		Compression:      c.KafkaCompression,
		Security:         c.kafkaSecurity(),
	}
}

// deleter is the janitor's database half with --retention=delete-after-publish, else nil.
func (c *Config) deleter(table capture.Table) pipeline.Deleter {
	if c.Retention != "delete-after-publish" {
		return nil
	}
	return capture.NewOutboxDeleter(c.DatabaseURL, table)
}

// thresholds builds the alarm thresholds from the configuration.
func (c *Config) thresholds() capture.Thresholds {
	return capture.Thresholds{
		LagWarnBytes: c.LagWarnBytes, LagCriticalBytes: c.LagCriticalBytes, KeepFraction: c.LagKeepFraction,
		AgeWarn: c.LagWarnAge, AgeCritical: c.LagCriticalAge,
	}
}

// preflight checks everything that a restart would not fix, so that a misconfiguration stops
// the process at once with a message naming the fix, instead of retrying forever.
func preflight(ctx context.Context, cfg *Config, table capture.Table, pub *sink.Publisher, log zerolog.Logger) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("%w (database %s)", capture.ClassifyConnectError(err), capture.RedactURL(cfg.DatabaseURL))
	}
	defer func() { _ = conn.Close(context.Background()) }()

	info, err := capture.CheckServer(cctx, conn)
	if err != nil {
		return err
	}
	if info.MaxSlotWALKeepSize < 0 {
		log.Warn().Msg("max_slot_wal_keep_size is -1 (unbounded): if this relay stalls, its slot retains WAL until the disk is full; " +
			"set max_slot_wal_keep_size to a size the disk can spare (e.g. ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'; SELECT pg_reload_conf())")
	}
	if w := info.IdleSlotTimeoutWarning(); w != "" {
		log.Warn().Stringer("idle_replication_slot_timeout", info.IdleSlotTimeout).Msg(w)
	}
	// A stretch the publication guard recorded and nobody recovered refuses every start: the
	// slot would decode it again with the publication as it was then, and skip its inserts.
	if err := checkGaps(cctx, conn, cfg, table); err != nil {
		return err
	}
	var sendErr error
	if cfg.From().Messages() {
		sendErr = capture.CheckSendFunctions(cctx, conn, table, cfg.MessagePrefix)
	}
	if err := errors.Join(
		capture.CheckTable(cctx, conn, table),
		capture.CheckPublication(cctx, conn, cfg.Publication, table),
		sendErr,
	); err != nil {
		return err
	}
	if _, err := capture.CheckSlot(cctx, conn, cfg.Slot); err != nil {
		return err
	}
	if _, err := pub.Partitions(cctx, cfg.Topic); err != nil {
		return err
	}
	if dlq := cfg.DeadLetter(); dlq != "" {
		if _, err := pub.Partitions(cctx, dlq); err != nil {
			return fmt.Errorf("dead-letter topic (--on-bad-row=dead-letter): %w", err)
		}
	}
	return nil
}

// catalog is a normal connection for the relay's periodic checks, opened on first use and
// again after a failure.
type catalog struct {
	url  string
	conn *pgx.Conn
}

func (c *catalog) connect(ctx context.Context) (*pgx.Conn, error) {
	if c.conn == nil {
		conn, err := pgx.Connect(ctx, c.url)
		if err != nil {
			return nil, capture.ClassifyConnectError(err)
		}
		c.conn = conn
	}
	return c.conn, nil
}

func (c *catalog) Close() {
	if c.conn != nil {
		_ = c.conn.Close(context.Background())
		c.conn = nil
	}
}

// slotReader reads the slot's figures for the relay's monitor.
type slotReader struct {
	catalog
	slot string
}

func (s *slotReader) ReadSlotStatus(ctx context.Context) (capture.Slot, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return capture.Slot{}, err
	}
	return capture.ReadSlot(ctx, conn, s.slot)
}

// publicationReader checks the publication for the relay's guard, on a connection of its own.
type publicationReader struct {
	catalog
	publication string
	table       capture.Table
}

// ReadPublication reads the WAL position, then the publication's state: two statements, so
// that the state's snapshot is taken after the position (see relay's pubGuard).
func (p *publicationReader) ReadPublication(ctx context.Context) (capture.LSN, capture.PublicationState, error) {
	conn, err := p.connect(ctx)
	if err != nil {
		return 0, capture.PublicationState{}, err
	}
	wal, err := capture.CurrentWAL(ctx, conn)
	if err != nil {
		return 0, capture.PublicationState{}, err
	}
	st, err := capture.ReadPublicationState(ctx, conn, p.publication, p.table)
	return wal, st, err
}

// gapRecorder records the publication guard's stretch in the gap table, on a connection of its
// own (the guard's may be the one that failed).
type gapRecorder struct {
	catalog
	table capture.Table
}

func (g *gapRecorder) RecordGap(ctx context.Context, gap capture.Gap) error {
	defer g.Close()
	conn, err := g.connect(ctx)
	if err != nil {
		return err
	}
	return capture.RecordGap(ctx, conn, g.table, gap)
}

// checkGaps returns a *capture.UnrecoveredGapError while the slot has an open stretch. When the
// publication covers the outbox inserts again, it records where that was first seen: the
// stretch's end is at or before it.
func checkGaps(ctx context.Context, conn *pgx.Conn, cfg *Config, table capture.Table) error {
	gaps, err := capture.OpenGaps(ctx, conn, table, cfg.Slot)
	if err != nil || len(gaps) == 0 {
		return err
	}
	if capture.CheckPublication(ctx, conn, cfg.Publication, table) == nil {
		wal, err := capture.CurrentWAL(ctx, conn)
		if err != nil {
			return err
		}
		for i := range gaps {
			if gaps[i].Covered == 0 {
				if err := capture.SetGapCovered(ctx, conn, table, gaps[i], wal); err != nil {
					return err
				}
				gaps[i].Covered = wal
			}
		}
	}
	return &capture.UnrecoveredGapError{Gaps: gaps}
}
