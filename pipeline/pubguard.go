package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
)

// ErrPublicationGap means the publication stopped covering the outbox's inserts while the
// relay streamed: PostgreSQL did not send the inserts committed in that stretch of WAL, and
// no keepalive may confirm past them. It is the "lost" alarm; the relay stops.
var ErrPublicationGap = errors.New("the publication stopped covering the outbox inserts")

// pubGuard decides, from periodic checks of the publication, how far the relay may confirm.
//
// A check reads the WAL position P first, then the publication's state in a later statement
// (a later snapshot). If the state is good and its catalog rows are the very ones seen at the
// first check (same Version: nothing changed, not even for a moment), no change to the
// publication committed before P — but a change whose commit record is before P may not be
// visible yet (a commit is written to WAL before it becomes visible, and stays invisible while
// it waits for a synchronous standby). So a good check proves the WAL before the *previous*
// check's P, by which time any such change is visible: that is the ceiling of confirmation.
// It is pure: the relay feeds it readings.
type pubGuard struct {
	version string // the publication's Version at the first check
	row     string // its RowVersion: at the first check, or as last verified
	// unsure: the publication may have changed before the first check, while no relay watched
	// (see Pipeline.VerifyPublicationAtStart): the first check is a rowChange from the start.
	unsure  bool
	prev    capture.LSN // P of the last good check; 0 before the first
	prevAt  time.Time
	ceiling capture.LSN // the position proven good; 0 = none yet (nothing past the start)
	proven  time.Time   // when ceiling was read
}

// observe takes one check and returns the new ceiling, or an error wrapping
// ErrPublicationGap that names the stretch in which events may be missing.
func (g *pubGuard) observe(wal capture.LSN, st capture.PublicationState, at time.Time, publication string, t capture.Table) (capture.LSN, error) {
	problem := st.Problem(publication, t)
	changed := g.version != "" && st.Version != g.version
	if problem != nil || changed {
		reason := fmt.Sprintf("publication %q changed since the relay started (its table dropped and re-added, or publish = … changed, even if changed back)", publication)
		if problem != nil {
			reason = strings.TrimPrefix(problem.Error(), capture.ErrNoPublication.Error()+": ")
		}
		return g.ceiling, &gapError{reason: reason, from: g.ceiling, fromAt: g.proven, to: wal, toAt: at, dropped: !st.Exists,
			publication: publication, table: t}
	}
	if g.version == "" && g.unsure {
		g.version, g.row, g.unsure = st.Version, st.RowVersion, false
		return g.ceiling, &rowChange{gap: gapError{
			reason: fmt.Sprintf("publication %q changed after the oldest WAL the slot may decode (its catalog rows are newer than the slot's catalog_xmin), "+
				"perhaps while no relay streamed, and covers the outbox inserts now", publication),
			from: g.ceiling, fromAt: g.proven, to: wal, toAt: at, publication: publication, table: t,
		}, row: st.RowVersion, atStart: true}
	}
	if g.version != "" && st.RowVersion != g.row {
		// Only the publication's own row changed, and it covers the inserts now: harmless, or
		// undone between two checks. The relay verifies it from the WAL (verifyChange).
		return g.ceiling, &rowChange{gap: gapError{
			reason: fmt.Sprintf("publication %q was altered (ALTER PUBLICATION … SET or OWNER TO) and covers the outbox inserts now", publication),
			from:   g.ceiling, fromAt: g.proven, to: wal, toAt: at, publication: publication, table: t,
		}, row: st.RowVersion}
	}
	if g.version == "" {
		g.version, g.row = st.Version, st.RowVersion
	} else {
		g.ceiling, g.proven = g.prev, g.prevAt
	}
	g.prev, g.prevAt = wal, at
	return g.ceiling, nil
}

// accept makes the publication's row as c saw it the baseline, once verifyChange proved that
// no insert of the stretch was filtered: the check that saw it counts as a good one.
func (g *pubGuard) accept(c *rowChange) {
	g.row = c.row
	g.prev, g.prevAt = c.gap.to, c.gap.toAt
}

// rowChange is what observe returns when only the publication's own catalog row changed and
// the publication covers the outbox inserts now. Whether it stopped covering them in between
// is unknown until the stretch is read again (see Deps.Verifier); until then nothing past the
// ceiling is confirmed.
type rowChange struct {
	gap     gapError // the stretch, should it turn out to be one
	row     string   // the RowVersion seen
	atStart bool     // the change may predate the relay (VerifyPublicationAtStart)
}

func (c *rowChange) Error() string { return "unverified publication change: " + c.gap.reason }

// lost returns the gap error of the stretch, with why it is one.
func (c *rowChange) lost(why string) *gapError {
	g := c.gap
	g.reason += "; " + why
	return &g
}

// gapError names the stretch of WAL in which the publication may not have covered the outbox.
type gapError struct {
	reason      string
	from, to    capture.LSN
	fromAt      time.Time
	toAt        time.Time
	dropped     bool // the publication itself is gone
	publication string
	table       capture.Table
}

func (e *gapError) Is(target error) bool {
	return target == ErrPublicationGap || target == capture.ErrNoPublication
}

func (e *gapError) Error() string {
	from := fmt.Sprintf("%s (proven good at %s)", e.from, e.fromAt.UTC().Format(time.RFC3339))
	if e.from == 0 {
		from = "the slot's confirmed position when the relay started"
	}
	fix := "fix the publication (`pgoutbox setup` covers the outbox inserts again)"
	if e.dropped {
		fix = "re-create the publication (`pgoutbox setup`)"
	}
	return fmt.Sprintf("%v: %s; PostgreSQL did not send the inserts committed in that stretch, so events committed after %s "+
		"and up to %s (%s) and until the publication covers them again may be missing from Kafka, and the slot was not confirmed past the first of them; "+
		"every start refuses to stream until the stretch is recovered; to recover: %s, then `pgoutbox recover --apply` "+
		"(which publishes the stretch's events with their true positions), then start the relay again",
		ErrPublicationGap, e.reason, from, e.to, e.toAt.UTC().Format(time.RFC3339), fix)
}

// Gap returns the stretch as the gap table records it.
func (e *gapError) Gap(slot string) capture.Gap {
	return capture.Gap{Slot: slot, From: e.from, To: e.to, DetectedAt: e.toAt, Reason: e.reason, Dropped: e.dropped}
}

// guardPublication checks the publication every PublicationInterval until ctx is done
// (ctx.Err()) or a check finds a gap (the error). It raises the confirmation ceiling after
// each good check.
func (r *Pipeline) guardPublication(ctx context.Context) error {
	if r.deps.Publication == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	defer r.closePublication()
	r.guard.mu.Lock()
	r.guard.g = &pubGuard{proven: r.clock.Now(), unsure: r.verifyAtStart}
	r.guard.mu.Unlock()
	for {
		if err := r.checkPublication(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.clock.After(r.cfg.PublicationInterval):
		}
	}
}

// guardState is the guard's state, shared by its loop and the shutdown's settle: one check at
// a time, on the reader's one connection.
type guardState struct {
	mu     sync.Mutex
	g      *pubGuard
	failed bool // a gap was found: nothing more may be proven
}

func (r *Pipeline) closePublication() {
	r.guard.mu.Lock()
	defer r.guard.mu.Unlock()
	r.deps.Publication.Close()
}

// settlePublication runs at a clean shutdown, after the drain and before the final status
// update: two more checks, one interval apart, so that the final confirmed position reaches
// what Kafka acknowledged instead of trailing it by the guard's one to two intervals (rows
// between them would be decoded again, and bad rows judged again, at the next start).
func (r *Pipeline) settlePublication() {
	if r.deps.Publication == nil {
		return
	}
	r.guard.mu.Lock()
	ready := r.guard.g != nil && !r.guard.failed
	r.guard.mu.Unlock()
	if !ready {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second+r.cfg.PublicationInterval)
	defer cancel()
	if r.checkPublication(ctx) != nil {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-r.clock.After(r.cfg.PublicationInterval):
	}
	_ = r.checkPublication(ctx)
	r.closePublication()
}

func (r *Pipeline) checkPublication(ctx context.Context) error {
	r.guard.mu.Lock()
	defer r.guard.mu.Unlock()
	if r.guard.failed {
		return nil
	}
	g := r.guard.g
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	wal, st, err := r.deps.Publication.ReadPublication(cctx)
	if err != nil {
		r.deps.Publication.Close()
		switch {
		case ctx.Err() != nil:
		case capture.ServerShuttingDown(err):
			// A shutting-down server's walsenders wait, before they exit, until the relay has
			// confirmed all they sent: holding confirmation here would hold up the shutdown.
			// So the last stretch is confirmed unchecked, and the next good check — on the
			// baseline version kept from before — tells whether the publication changed
			// meanwhile (then the lost alarm names the stretch from the last proven position).
			if r.ceiling.Swap(math.MaxUint64) != math.MaxUint64 {
				r.log.Warn().Stringer("proven_lsn", r.guard.g.ceiling).
					Msg("PostgreSQL is shutting down: confirming the stream's last stretch without a publication check, so as not to hold up the shutdown; the next check verifies that the publication did not change meanwhile")
			}
		default:
			// The ceiling stays where it is: confirmation waits, nothing is assumed.
			r.log.Warn().Err(err).Msg("cannot check the publication; confirmation waits until a check succeeds")
		}
		return nil
	}
	ceiling, err := g.observe(wal, st, r.clock.Now(), r.cfg.Publication, r.cfg.Table)
	var change *rowChange
	if errors.As(err, &change) {
		if err = r.verifyChange(ctx, change); err == nil {
			g.accept(change)
			return nil
		}
		if ctx.Err() != nil {
			// Stopped before the verification ended: nothing past the ceiling was confirmed,
			// and the change stays newer than the slot's catalog_xmin, so the next start
			// verifies it again (VerifyPublicationAtStart).
			return ctx.Err()
		}
	}
	if err != nil {
		r.guard.failed = true
		r.recordGap(ctx, err)
		r.lost(err)
		return err
	}
	r.ceiling.Store(uint64(ceiling))
	return nil
}

// recordGap persists the stretch (see Deps.Gaps) before the relay stops, so that every later
// start refuses to stream past it — even in another process, after a redeploy — until it is
// recovered. A failure is logged: the slot still stays before the stretch, and the next start's
// check of the publication's catalog rows against the slot (see cmd/pgoutbox) is the fallback.
func (r *Pipeline) recordGap(ctx context.Context, err error) {
	var ge *gapError
	if r.deps.Gaps == nil || !errors.As(err, &ge) {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	g := ge.Gap(r.cfg.Slot)
	if rerr := r.deps.Gaps.RecordGap(cctx, g); rerr != nil {
		r.log.Error().Err(rerr).Stringer("from_lsn", g.From).Stringer("to_lsn", g.To).
			Msg("cannot record the publication stretch in the database; a restart may not know of it: run `pgoutbox recover` before starting the relay again")
		return
	}
	r.log.Info().Stringer("from_lsn", g.From).Stringer("to_lsn", g.To).
		Msg("publication stretch recorded: every start refuses to stream until `pgoutbox recover --apply` has published it")
}

// recordLostSlot persists a lost slot (see Deps.Gaps) before the relay stops, so that every
// later start refuses to stream — also once the slot exists again, e.g. after `pgoutbox setup`,
// which would start it at the end of WAL and skip what was lost — and `pgoutbox status` stays
// critical, until `pgoutbox recover --apply` has republished what the outbox table holds. A
// failure is logged: an invalidated slot refuses by itself, and recover finds it without the row.
func (r *Pipeline) recordLostSlot(ctx context.Context, err error) {
	if r.deps.Gaps == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	from := r.Progress().Confirmed
	var le *capture.LostSlotError
	if errors.As(err, &le) && le.From != 0 {
		from = le.From // the position the error names
	}
	why, _, _ := strings.Cut(err.Error(), "; ") // what happened, without the advice
	why = strings.TrimPrefix(why, capture.ErrSlotLost.Error()+": ")
	g := capture.Gap{Slot: r.cfg.Slot, Kind: capture.GapSlotLost, From: from, To: from, Reason: why}
	if rerr := r.deps.Gaps.RecordGap(cctx, g); rerr != nil {
		r.log.Error().Err(rerr).Stringer("from_lsn", from).
			Msg("cannot record the lost slot in the database; run `pgoutbox recover` before starting the relay again")
		return
	}
	r.log.Info().Stringer("from_lsn", from).
		Msg("lost slot recorded: every start refuses to stream until `pgoutbox recover --apply` has republished what the outbox table holds")
}

// lost raises the lost alarm: the same "slot alarm lost" line as the slot monitor's, naming the
// command that fixes it, and the observer's alarm.
func (r *Pipeline) lost(err error) {
	action := capture.Advice(capture.LevelLost, capture.Slot{Name: r.cfg.Slot})
	if errors.Is(err, ErrPublicationGap) {
		action = "run `pgoutbox setup` (it covers the outbox inserts again), then `pgoutbox recover` to see what it will publish, then `pgoutbox recover --apply`"
	}
	r.log.Error().Str("slot", r.cfg.Slot).Stringer("alarm", capture.LevelLost).Str("reason", err.Error()).Str("action", action).
		Msg("slot alarm " + capture.LevelLost.String())
	r.obs.Lost(err)
}

// verifyChange decides from the WAL whether a change of the publication's own row (see
// rowChange) stopped it covering the outbox inserts for a while. The verifier reads the stretch
// again, from the slot's confirmed position (at or before the ceiling) to past every
// transaction running now, through the recovery publication — which nothing alters — and, once
// the relay has published everything before that end, tells which of its events Kafka does not
// hold. None: the change was harmless (publish_via_partition_root on an unpartitioned outbox,
// update added to publish) and the relay streams on. Any, or no way to verify: it is a
// publication stretch, like a dropped table. Confirmation stays at the ceiling meanwhile.
func (r *Pipeline) verifyChange(ctx context.Context, c *rowChange) error {
	// unverifiable is the result when the WAL cannot be read again: mid-stream, the change is a
	// stretch (as any change was before verification existed); at start, where nothing was
	// watched before this version either, a warning — only proof of a missing event stops it.
	unverifiable := func(why string) error {
		if ctx.Err() != nil {
			return ctx.Err() // a shutdown, not a failure to verify
		}
		if !c.atStart {
			return c.lost(why)
		}
		r.log.Warn().Str("reason", c.gap.reason).Str("why", why).
			Msg("cannot verify that the publication covered the outbox inserts throughout the WAL this start decodes; streaming on unverified " +
				"(`pgoutbox setup` creates the recovery publication the verification reads through)")
		return nil
	}
	v := r.deps.Verifier
	if v == nil {
		return unverifiable("it cannot be verified here, so it may have stopped covering them in between")
	}
	r.log.Info().Stringer("from_lsn", c.gap.from).Stringer("to_lsn", c.gap.to).Str("reason", c.gap.reason).
		Msg("verifying from the WAL that the publication covered the outbox inserts throughout (confirmation waits)")
	end, events, err := v.ReadStretch(ctx)
	if err != nil {
		return unverifiable(fmt.Sprintf("it could not be verified that it covered them throughout (%v)", err))
	}
	if err := r.waitPublished(ctx, end); err != nil {
		return err
	}
	missing, err := v.Missing(ctx, events)
	if err != nil {
		return unverifiable(fmt.Sprintf("it could not be verified that it covered them throughout (%v)", err))
	}
	if len(missing) > 0 {
		return c.lost(fmt.Sprintf("it did not cover them throughout: %d of the %d events committed up to %s were not sent (the first: id %s at %s)",
			len(missing), len(events), end, missing[0].ID, missing[0].Position()))
	}
	r.log.Info().Int("events_verified", len(events)).Stringer("through_lsn", end).
		Msg("publication change verified: it covered the outbox inserts throughout (every event of the stretch is in Kafka); streaming on")
	return nil
}

// waitPublished returns once the relay's ledger — not held at the ceiling — has passed end:
// every outbox row committed before end that PostgreSQL sent is in Kafka.
func (r *Pipeline) waitPublished(ctx context.Context, end capture.LSN) error {
	for {
		if s := r.current.Load(); s != nil && capture.LSN(s.out.tracker.Confirmed()) >= end {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// VerifyPublicationAtStart makes the publication guard verify from the WAL, before it proves
// anything past the slot's position at start, that the publication covered the outbox inserts
// throughout the WAL the relay decodes first (see verifyChange): call it before Run when the
// publication may have changed while no relay watched ([capture.PublicationChangedSinceSlot]).
func (r *Pipeline) VerifyPublicationAtStart() { r.verifyAtStart = true }
