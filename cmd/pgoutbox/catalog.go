package main

import (
	"context"

	"github.com/pgoutbox/pgoutbox/capture"
)

// catalog is a normal connection for the relay's periodic checks, opened on first use and
// again after a failure.
type catalog struct {
	url  string
	conn *capture.Conn
}

func (c *catalog) connect(ctx context.Context) (*capture.Conn, error) {
	if c.conn == nil {
		conn, err := capture.Connect(ctx, c.url)
		if err != nil {
			return nil, err
		}
		c.conn = conn
	}
	return c.conn, nil
}

func (c *catalog) Close() {
	c.conn.Close()
	c.conn = nil
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

// checkGaps returns a *capture.UnrecoveredGapError while the slot has an open stretch or an
// unrecovered lost slot (recorded by the relay that lost it, or by `pgoutbox recover`). When the
// publication covers the outbox inserts again, it records where that was first seen: the
// stretch's end is at or before it.
func checkGaps(ctx context.Context, conn *capture.Conn, cfg *Config, table capture.Table) error {
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
			if gaps[i].Covered == 0 && !gaps[i].Lost() {
				if err := capture.SetGapCovered(ctx, conn, table, gaps[i], wal); err != nil {
					return err
				}
				gaps[i].Covered = wal
			}
		}
	}
	return &capture.UnrecoveredGapError{Gaps: gaps}
}
