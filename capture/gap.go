package capture

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// GapTableName is the table, in the outbox table's schema, where the relay records a stretch
// of WAL whose outbox inserts PostgreSQL did not send (the publication stopped covering them),
// so that every later start refuses to stream past it until `pgoutbox recover` has published
// them, or the operator accepted the loss. It survives restarts and redeploys, unlike the
// relay's memory. `pgoutbox setup` creates it; the relay creates it too when it must record
// a stretch and it is missing.
const GapTableName = "pgoutbox_gap"

// Kinds of a recorded loss (the kind column).
const (
	// GapPublication: a stretch of WAL in which the publication did not cover the outbox
	// inserts; the WAL is still there, and `pgoutbox recover` reads it again.
	GapPublication = "publication"
	// GapSlotLost: the slot was invalidated or dropped; the WAL after From is gone, and
	// `pgoutbox recover` creates the slot again and republishes what the outbox table holds.
	GapSlotLost = "slot lost"
)

// Resolutions of a stretch (the resolution column).
const (
	GapRecovered = "recovered" // `pgoutbox recover --apply` published the stretch's events
	GapAccepted  = "accepted"  // `pgoutbox recover --accept-loss --apply`: the operator accepted the loss
)

// Gap is one row of the gap table: a stretch of WAL in which the publication did not cover the
// outbox inserts.
type Gap struct {
	Slot string
	// Kind is GapPublication or GapSlotLost ("" is GapPublication).
	Kind string
	// From is the last position proven good: the stretch starts after it.
	From pglogrepl.LSN
	// To is the WAL position at which the relay saw the publication broken: the stretch lasts at
	// least until there, and until the publication covered the inserts again (the true end,
	// which only a later reading can tell: see [Gap.Covered]).
	To         pglogrepl.LSN
	DetectedAt time.Time
	Reason     string
	// Dropped: the publication itself was dropped (the slot cannot decode past the drop).
	Dropped bool
	// Covered is the first WAL position at which the publication was seen covering the outbox
	// inserts again, 0 while unknown: the stretch's end is at or before it.
	Covered pglogrepl.LSN
	// Resolution is "" while the stretch is open, else GapRecovered or GapAccepted.
	Resolution string
	ResolvedAt time.Time
	// Published is how many events `pgoutbox recover` published for the stretch.
	Published int64
}

// GapTable returns the qualified name of the gap table next to the outbox table t.
func GapTable(t Table) string { return pgx.Identifier{t.Schema, GapTableName}.Sanitize() }

// CreateGapTableSQL returns the statement that creates the gap table, if it does not exist.
func CreateGapTableSQL(t Table) string {
	return "CREATE TABLE IF NOT EXISTS " + GapTable(t) + ` (
  slot        text        NOT NULL,
  from_lsn    pg_lsn      NOT NULL,
  to_lsn      pg_lsn      NOT NULL,
  detected_at timestamptz NOT NULL DEFAULT now(),
  reason      text        NOT NULL,
  dropped     boolean     NOT NULL DEFAULT false,
  covered_lsn pg_lsn,
  resolution  text,
  resolved_at timestamptz,
  published   bigint,
  kind        text        NOT NULL DEFAULT 'publication',
  PRIMARY KEY (slot, from_lsn)
)`
}

// EnsureGapTable creates the gap table when it does not exist.
func EnsureGapTable(ctx context.Context, q Querier, t Table) (created bool, err error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, GapTable(t)).Scan(&exists); err != nil {
		return false, fmt.Errorf("look for %s: %w", GapTable(t), err)
	}
	if exists {
		return false, nil
	}
	// Concurrent CREATE TABLE IF NOT EXISTS of one name can fail on the catalog's unique index:
	// a session advisory lock serializes the setups (and relays) of one schema.
	lock := "pgoutbox_gap " + t.Schema
	if _, err := q.Exec(ctx, `SELECT pg_advisory_lock(hashtext($1))`, lock); err != nil {
		return false, fmt.Errorf("create %s: %w", GapTable(t), err)
	}
	defer func() { _, _ = q.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext($1))`, lock) }()
	if _, err := q.Exec(ctx, CreateGapTableSQL(t)); err != nil {
		return false, fmt.Errorf("create %s: %w", GapTable(t), err)
	}
	return true, nil
}

// EnsureGapKind adds the kind column to a gap table created before it had one (`pgoutbox
// setup`, as the table's owner, does it; so does the first record of a lost slot). A relay that
// records only publication stretches does without it.
func EnsureGapKind(ctx context.Context, q Querier, t Table) error {
	var has bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_attribute
		WHERE attrelid = $1::regclass AND attname = 'kind' AND NOT attisdropped)`, GapTable(t)).Scan(&has); err != nil {
		return fmt.Errorf("read %s: %w", GapTable(t), err)
	}
	if has {
		return nil
	}
	alter := `ALTER TABLE ` + GapTable(t) + ` ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'publication'`
	if _, err := q.Exec(ctx, alter); err != nil {
		return fmt.Errorf("add the kind column to %s: run `pgoutbox setup` as its owner (or, as its owner, %s): %w", GapTable(t), alter, err)
	}
	return nil
}

// RecordGap stores g as an open stretch (creating the table if it is missing). A stretch
// already recorded from the same position keeps its row, with the later end. A lost slot
// (Kind GapSlotLost) needs the kind column, which tables created before it lack: it is added
// then (the table's owner may; another role gets an error naming the statement).
func RecordGap(ctx context.Context, q Querier, t Table, g Gap) error {
	if _, err := EnsureGapTable(ctx, q, t); err != nil {
		return err
	}
	insert := `INSERT INTO ` + GapTable(t) + ` (slot, from_lsn, to_lsn, reason, dropped)
		VALUES ($1, $2::text::pg_lsn, $3::text::pg_lsn, $4, $5)`
	args := []any{g.Slot, g.From.String(), g.To.String(), g.Reason, g.Dropped}
	if g.Kind == GapSlotLost {
		if err := EnsureGapKind(ctx, q, t); err != nil {
			return err
		}
		insert = `INSERT INTO ` + GapTable(t) + ` (slot, from_lsn, to_lsn, reason, dropped, kind)
		VALUES ($1, $2::text::pg_lsn, $3::text::pg_lsn, $4, $5, $6)`
		args = append(args, g.Kind)
	}
	_, err := q.Exec(ctx, insert+`
		ON CONFLICT (slot, from_lsn) DO UPDATE SET to_lsn = greatest(`+GapTable(t)+`.to_lsn, excluded.to_lsn)`, args...)
	if err != nil {
		return fmt.Errorf("record the publication stretch %s..%s in %s: %w", g.From, g.To, GapTable(t), err)
	}
	return nil
}

// OpenGaps returns the slot's stretches that are neither recovered nor accepted, oldest first;
// none when the gap table does not exist.
func OpenGaps(ctx context.Context, q Querier, t Table, slot string) ([]Gap, error) {
	return readGaps(ctx, q, t, slot, "resolution IS NULL")
}

// AllGaps returns every stretch recorded for the slot, oldest first.
func AllGaps(ctx context.Context, q Querier, t Table, slot string) ([]Gap, error) {
	return readGaps(ctx, q, t, slot, "true")
}

func readGaps(ctx context.Context, q Querier, t Table, slot, where string) ([]Gap, error) {
	// to_jsonb(g) reads the kind column where it exists: tables created before it have none.
	rows, err := q.Query(ctx, `SELECT slot, from_lsn::text, to_lsn::text, detected_at, reason, dropped,
		coalesce(covered_lsn::text, '0/0'), coalesce(resolution, ''), coalesce(resolved_at, 'epoch'), coalesce(published, 0),
		coalesce(to_jsonb(g)->>'kind', 'publication')
		FROM `+GapTable(t)+` g WHERE slot = $1 AND `+where+` ORDER BY from_lsn`, slot)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table: nothing recorded
			return nil, nil
		}
		return nil, fmt.Errorf("read %s: %w", GapTable(t), err)
	}
	defer rows.Close()
	var gaps []Gap
	for rows.Next() {
		var g Gap
		var from, to, covered string
		if err := rows.Scan(&g.Slot, &from, &to, &g.DetectedAt, &g.Reason, &g.Dropped, &covered, &g.Resolution, &g.ResolvedAt, &g.Published, &g.Kind); err != nil {
			return nil, fmt.Errorf("read %s: %w", GapTable(t), err)
		}
		if g.From, err = pglogrepl.ParseLSN(from); err == nil {
			if g.To, err = pglogrepl.ParseLSN(to); err == nil {
				g.Covered, err = pglogrepl.ParseLSN(covered)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", GapTable(t), err)
		}
		gaps = append(gaps, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", GapTable(t), err)
	}
	return gaps, nil
}

// SetGapCovered records where the publication was first seen covering the inserts again.
func SetGapCovered(ctx context.Context, q Querier, t Table, g Gap, covered pglogrepl.LSN) error {
	_, err := q.Exec(ctx, `UPDATE `+GapTable(t)+` SET covered_lsn = $3::text::pg_lsn
		WHERE slot = $1 AND from_lsn = $2::text::pg_lsn AND covered_lsn IS NULL`, g.Slot, g.From.String(), covered.String())
	if err != nil {
		return fmt.Errorf("update %s: %w", GapTable(t), err)
	}
	return nil
}

// ResolveGap closes the stretch with a resolution and the number of events published for it.
func ResolveGap(ctx context.Context, q Querier, t Table, g Gap, resolution string, published int64) error {
	_, err := q.Exec(ctx, `UPDATE `+GapTable(t)+` SET resolution = $3, resolved_at = now(), published = $4
		WHERE slot = $1 AND from_lsn = $2::text::pg_lsn AND resolution IS NULL`, g.Slot, g.From.String(), resolution, published)
	if err != nil {
		return fmt.Errorf("update %s: %w", GapTable(t), err)
	}
	return nil
}

// Lost reports whether g records a lost slot (not a publication stretch).
func (g Gap) Lost() bool { return g.Kind == GapSlotLost }

// String names the stretch for log lines and errors.
func (g Gap) String() string {
	if g.Lost() {
		return fmt.Sprintf("slot %s lost after %s, seen at %s: %s", g.Slot, g.From, g.DetectedAt.UTC().Format(time.RFC3339), g.Reason)
	}
	end := g.To.String()
	if g.Covered > g.To {
		end = g.Covered.String() + " (the publication covered the inserts again by then)"
	}
	return fmt.Sprintf("WAL after %s up to %s, seen at %s: %s", g.From, end, g.DetectedAt.UTC().Format(time.RFC3339), g.Reason)
}

// UnrecoveredGapError is the refusal of a relay start while a stretch is open: the slot would
// decode the stretch again with the publication as it was then, PostgreSQL would again not
// send its inserts, and the relay would confirm past them — losing them for good.
type UnrecoveredGapError struct {
	Gaps []Gap
}

// ErrUnrecoveredGap is what [UnrecoveredGapError] wraps, with [ErrNoPublication].
var ErrUnrecoveredGap = errors.New("the publication stopped covering the outbox inserts")

// Is reports ErrUnrecoveredGap and ErrNoPublication, or ErrSlotLost when a gap is a lost slot.
func (e *UnrecoveredGapError) Is(target error) bool {
	if e.lost() != nil {
		return target == ErrSlotLost
	}
	return target == ErrUnrecoveredGap || target == ErrNoPublication
}

func (e *UnrecoveredGapError) lost() *Gap {
	for i := range e.Gaps {
		if e.Gaps[i].Lost() {
			return &e.Gaps[i]
		}
	}
	return nil
}

func (e *UnrecoveredGapError) Error() string {
	if g := e.lost(); g != nil {
		return fmt.Sprintf("%v: %s; that loss was not recovered, and streaming on would skip what Kafka lacks for good: "+
			"run `pgoutbox recover` to see what it will do, then `pgoutbox recover --apply` (it creates the slot again, "+
			"republishes the outbox rows that are not in Kafka and tells clients to re-sync)", ErrSlotLost, g)
	}
	g := e.Gaps[0]
	more := ""
	if len(e.Gaps) > 1 {
		more = fmt.Sprintf(" (and %d later stretches)", len(e.Gaps)-1)
	}
	return fmt.Sprintf("%v in %s%s, and that stretch was not recovered: its events are not in Kafka, and streaming on would skip them for good; "+
		"run `pgoutbox recover` to see what it will publish, then `pgoutbox recover --apply`; "+
		"or, to give those events up, `pgoutbox recover --accept-loss --apply`",
		ErrUnrecoveredGap, g, more)
}

// RecoveryPublication is the name of the publication that `pgoutbox setup` creates next to the
// relay's own, for `pgoutbox recover` alone: it covers the outbox inserts as the relay's does,
// and nothing alters it, so a copy of the slot decoded through it sends the inserts of a
// stretch in which the relay's publication did not cover them, with their true positions.
func RecoveryPublication(publication string) string {
	const suffix = "_recovery"
	if len(publication)+len(suffix) > 63 { // NAMEDATALEN-1
		publication = publication[:63-len(suffix)]
	}
	return publication + suffix
}

// RepairPublication makes an existing publication cover the outbox inserts again — it adds the
// table, or adds inserts to what it publishes, keeping everything else — and returns what it
// did ("" when nothing was needed). A missing publication is left to [EnsurePublication].
func RepairPublication(ctx context.Context, q Querier, publication string, t Table) (string, error) {
	st, err := ReadPublicationState(ctx, q, publication, t)
	if err != nil || !st.Exists {
		return "", err
	}
	var did []string
	if !st.IncludesTable {
		if _, err := q.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", quote(publication), t.QualifiedName())); err != nil {
			return "", fmt.Errorf("add %s to publication %q: %w", t.QualifiedName(), publication, err)
		}
		did = append(did, "added table "+t.QualifiedName())
	}
	if !st.PublishesInserts {
		var update, del, truncate bool
		if err := q.QueryRow(ctx, `SELECT pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = $1`, publication).
			Scan(&update, &del, &truncate); err != nil {
			return "", fmt.Errorf("read publication %q: %w", publication, err)
		}
		publish := "insert"
		for _, op := range []struct {
			on   bool
			name string
		}{{update, "update"}, {del, "delete"}, {truncate, "truncate"}} {
			if op.on {
				publish += ", " + op.name
			}
		}
		if _, err := q.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s SET (publish = %s)", quote(publication), literal(publish))); err != nil {
			return "", fmt.Errorf("make publication %q publish inserts: %w", publication, err)
		}
		did = append(did, "publish = '"+publish+"'")
	}
	return fmt.Sprint(did), nil
}
