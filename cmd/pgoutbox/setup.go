package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/sink"
	"github.com/rs/zerolog"
)

// runSetup is `pgoutbox setup`: it creates what is missing — outbox table, publication, slot,
// and with --partitions the topic — and verifies what exists. Running it again changes nothing.
func runSetup(ctx context.Context, cfg *Config, base zerolog.Logger, stdout io.Writer) error {
	log := base.With().Str("component", "setup").Logger()
	table, err := cfg.Table()
	if err != nil {
		return err
	}
	if cfg.PrintSQL {
		slotSQL := capture.CreateSlotSQL(cfg.Slot)
		if cfg.Failover {
			slotSQL = capture.CreateFailoverSlotSQL(cfg.Slot)
		}
		stmts := []string{capture.CreateTableSQL(table), capture.CreatePublicationSQL(cfg.Publication, table),
			capture.CreatePublicationSQL(capture.RecoveryPublication(cfg.Publication), table), capture.CreateGapTableSQL(table), slotSQL}
		if cfg.From().Messages() {
			stmts = append(stmts, capture.SendFunctionsSQL(table, cfg.MessagePrefix, capture.SendInvoker)...)
		}
		_, err := fmt.Fprintf(stdout, "%s;\n", strings.Join(stmts, ";\n\n"))
		return err
	}

	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := capture.Connect(cctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	info, err := capture.CheckServer(cctx, conn)
	if err != nil {
		return err
	}
	ensureSlot := func() (bool, error) { return capture.EnsureSlot(cctx, conn, cfg.Slot) }
	if cfg.Failover {
		// Checked before anything is created: a refused --failover leaves the database as it was.
		if err := capture.CheckFailoverSupport(info); err != nil {
			return err
		}
		ensureSlot = func() (bool, error) { return capture.EnsureFailoverSlot(cctx, conn, info, cfg.Slot) }
	}
	if err := capture.CheckSetupPrivileges(cctx, conn, table, cfg.Publication); err != nil {
		return err
	}
	// Before anything is created: with Kafka unreachable, setup cannot tell a first setup from a
	// slot lost while no relay ran, and stops.
	prior, err := priorStream(cctx, conn, cfg, table, base)
	if err != nil {
		return err
	}

	// Kafka first: it creates nothing that pins WAL, so when Kafka is unreachable setup stops
	// before it creates a slot (a slot left behind by a failed setup would retain WAL forever).
	if cfg.Partitions > 0 {
		pub, err := sink.New(sink.Config{Brokers: cfg.Brokers(), Topic: cfg.Topic, Security: cfg.kafkaSecurity()}, base)
		if err != nil {
			return err
		}
		defer func() { _ = pub.Close() }()
		created, err := pub.CreateTopic(cctx, cfg.Topic, cfg.Partitions, cfg.ReplicationFactor)
		if err != nil {
			return err
		}
		report(log, "topic "+cfg.Topic, created)
		if dlq := cfg.DeadLetter(); dlq != "" {
			// Rows land here because they are too large or malformed: let it take large records.
			created, err := pub.CreateTopicWithConfig(cctx, dlq, cfg.Partitions, cfg.ReplicationFactor,
				map[string]string{"max.message.bytes": "67108864"})
			if err != nil {
				return err
			}
			report(log, "dead-letter topic "+dlq, created)
		}
	}
	// Order matters: pgoutput looks the publication up as of the WAL it decodes, so it must
	// exist before the slot's starting point.
	type step struct {
		what string
		do   func() (bool, error)
	}
	steps := []step{
		{"table " + table.QualifiedName(), func() (bool, error) { return capture.EnsureTable(cctx, conn, table) }},
		{"publication " + cfg.Publication, func() (bool, error) {
			created, err := capture.EnsurePublication(cctx, conn, cfg.Publication, table)
			if errors.Is(err, capture.ErrNoPublication) {
				// It exists but stopped covering the outbox inserts: cover them again (what the
				// relay's and status's advice asks setup to do).
				did, rerr := capture.RepairPublication(cctx, conn, cfg.Publication, table)
				if rerr != nil {
					return false, rerr
				}
				log.Warn().Str("repair", did).Msg("publication " + cfg.Publication + " did not cover the outbox inserts; repaired")
				return false, capture.CheckPublication(cctx, conn, cfg.Publication, table)
			}
			return created, err
		}},
		// Before the slot: a copy of the slot decodes through it from the slot's position on
		// (pgoutput looks publications up as of the WAL it decodes).
		{"recovery publication " + capture.RecoveryPublication(cfg.Publication), func() (bool, error) {
			return capture.EnsurePublication(cctx, conn, capture.RecoveryPublication(cfg.Publication), table)
		}},
		{"publication-stretch table " + capture.GapTable(table), func() (bool, error) {
			created, err := capture.EnsureGapTable(cctx, conn, table)
			if err == nil {
				err = capture.EnsureGapKind(cctx, conn, table) // tables created before the kind column
			}
			return created, err
		}},
		{"replication slot " + cfg.Slot, ensureSlot},
	}
	if cfg.From().Messages() { // the WAL-only outbox (--events-from=both or messages)
		steps = append(steps[:4:4], append([]step{{"functions " + capture.SendFunction + " and " + capture.SendBytesFunction +
			" (message prefix " + cfg.MessagePrefix + ")", func() (bool, error) {
			return capture.EnsureSendFunctions(cctx, conn, table, cfg.MessagePrefix)
		}}}, steps[2:]...)...)
	}
	for _, s := range steps {
		created, err := s.do()
		if err != nil {
			return err
		}
		report(log, s.what, created)
	}
	if prior != nil {
		return recordPriorLoss(cctx, conn, cfg, table, *prior, log)
	}
	return nil
}

func report(log zerolog.Logger, what string, created bool) {
	if created {
		log.Info().Msg("created " + what)
	} else {
		log.Info().Msg(what + " exists and is usable")
	}
}
