package main

import (
	"context"
	"fmt"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/sink"
	"github.com/rs/zerolog"
)

// stretchVerifier is the relay's pipeline.Verifier: it reads a stretch again as `pgoutbox
// recover` does — a temporary copy of the slot (the slot itself may be streamed meanwhile),
// decoded through the recovery publication — and tests the events' positions against Kafka.
type stretchVerifier struct {
	cfg   *Config
	table capture.Table
	base  zerolog.Logger // for the parts that add their own component (capture, sink)
	log   zerolog.Logger // component=verify
}

// ReadStretch implements pipeline.Verifier.
func (v *stretchVerifier) ReadStretch(ctx context.Context) (capture.LSN, []capture.Event, error) {
	conn, err := capture.Connect(ctx, v.cfg.DatabaseURL)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	recovery := capture.RecoveryPublication(v.cfg.Publication)
	if err := capture.CheckPublication(ctx, conn, recovery, v.table); err != nil {
		return 0, nil, fmt.Errorf("the recovery publication is missing or incomplete (`pgoutbox setup` creates it): %w", err)
	}
	end, err := stretchEnd(ctx, conn, v.log)
	if err != nil {
		return 0, nil, err
	}
	// The copy's own lines ("streaming started", a bad row "sent to the dead-letter topic"...)
	// are not the relay's, and its errors come back here: it logs nothing.
	events, err := readStretch(ctx, v.cfg, v.table, recovery, end, true, zerolog.Nop())
	return end, events, err
}

// Missing implements pipeline.Verifier.
func (v *stretchVerifier) Missing(ctx context.Context, events []capture.Event) ([]capture.Event, error) {
	pub, err := sink.New(v.cfg.sinkConfig(newMetrics()), v.base.Level(zerolog.WarnLevel))
	if err != nil {
		return nil, err
	}
	defer func() { _ = pub.Close() }()
	var good, bad []capture.Event
	for _, e := range events {
		if e.DeadLetter != "" {
			e.Topic = v.cfg.DeadLetter() // a bad row's record is in the dead-letter topic
			bad = append(bad, e)
			continue
		}
		good = append(good, e)
	}
	missing, err := notInKafka(ctx, pub, v.cfg.Topic, good)
	if err != nil || len(bad) == 0 {
		return missing, err
	}
	missingBad, err := notInKafka(ctx, pub, v.cfg.DeadLetter(), bad)
	return append(missing, missingBad...), err
}
