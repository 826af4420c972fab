package main

import (
	"context"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/pipeline"
	"github.com/pgoutbox/pgoutbox/sink"
	"github.com/rs/zerolog"
)

// runRelay is `pgoutbox run`: it builds the pipeline's parts from the configuration, checks
// everything a restart would not fix, serves /metrics and health, and runs the relay until
// shutdown (nil) or a failure (an error: exit 1). Kafka down at start is not a failure: the
// relay waits for it (awaitKafka), with /readyz 503, as a running relay does.
func runRelay(ctx context.Context, cfg *Config, log zerolog.Logger) error {
	log.Debug().Int("gomaxprocs", relayProcs()).Msg("Go threads running the relay at once (GOMAXPROCS, default 1)")
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
		Verifier:    &stretchVerifier{cfg: cfg, table: table, base: log, log: log.With().Str("component", "verify").Logger()},
		Deleter:     cfg.deleter(table),
		AwaitSink: func(ctx context.Context) error {
			return awaitKafka(ctx, cfg, pub, m.health, log.With().Str("component", "relay").Logger())
		},
		Observer: m,
		Log:      log,
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
	unsure, err := preflight(ctx, cfg, table, log.With().Str("component", "relay").Logger())
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if unsure {
		pl.VerifyPublicationAtStart()
	}
	return pl.Run(ctx)
}
