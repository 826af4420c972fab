package capture

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgoutbox/pgoutbox/record"
)

// After a lost slot, `pgoutbox recover` creates the slot again and republishes, from the outbox
// table, the rows that the new slot will not stream: those committed before the new slot's
// start, read in the snapshot the slot exports at its creation (exactly those transactions).
// This file holds the database half: the new slot and its snapshot, the rows in it, their order.

// NewSlot is a slot created again by [RecreateSlot].
type NewSlot struct {
	// Start is the slot's consistent point: it streams the transactions that commit at or
	// after it; its snapshot holds exactly those that committed before it.
	Start LSN
	// Source is the stream the slot starts (system, timeline, slot, routing).
	Source record.Source
	// CommitTimestamps reports track_commit_timestamp = on: the rows' commit times are known
	// (for the transactions committed since it was turned on).
	CommitTimestamps bool
	// NextXID is the server's next full transaction id in the snapshot, to widen xmin.
	NextXID uint64
}

// RecreateSlot drops the slot when it exists — only for a lost slot, or one that a crashed
// `pgoutbox recover` created and nobody streamed (the relay refuses to start while the loss is
// open) — creates it again over a replication connection with an exported snapshot, and calls
// read in a REPEATABLE READ transaction of that snapshot, while it is valid. failover creates
// a failover slot (PostgreSQL 17+). routing is the stream's [RoutingOf].
func RecreateSlot(ctx context.Context, url, slot, routing string, failover bool, read func(ctx context.Context, q Querier, ns NewSlot) error) error {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("parse database URL: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "pgoutbox recover"
	repl, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return ClassifyConnectError(err)
	}
	defer func() { _ = repl.Close(context.WithoutCancel(ctx)) }()

	conn, err := Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()
	s, err := ReadSlot(ctx, conn, slot)
	if err != nil {
		return err
	}
	if s.Active {
		return errSlotInUse(slot, s.ActivePID)
	}
	if s.Exists {
		if err := DropSlot(ctx, conn, slot); err != nil {
			return err
		}
	}
	src, err := identify(ctx, repl, slot, routing)
	if err != nil {
		return err
	}
	opts := "SNAPSHOT 'export'"
	if failover {
		opts += ", FAILOVER true"
	}
	res, err := pglogrepl.ParseCreateReplicationSlot(repl.Exec(ctx,
		fmt.Sprintf("CREATE_REPLICATION_SLOT %s LOGICAL %s (%s)", quote(slot), outputPlugin, opts)))
	if err != nil {
		return fmt.Errorf("create replication slot %q: %w", slot, err)
	}
	start, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return fmt.Errorf("create replication slot %q: consistent point: %w", slot, err)
	}

	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin the snapshot of the new slot: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+literal(res.SnapshotName)); err != nil {
		return fmt.Errorf("use the snapshot of the new slot: %w", err)
	}
	ns := NewSlot{Start: start, Source: src}
	if ns.CommitTimestamps, ns.NextXID, err = snapshotFacts(ctx, tx); err != nil {
		return err
	}
	if err := read(ctx, tx, ns); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// ReadInSnapshot calls read in a read-only REPEATABLE READ transaction of conn, with whether
// commit timestamps are tracked and the server's next full transaction id — what [RecreateSlot]
// gives its reader — for a dry run, which reads the table without creating a slot.
func ReadInSnapshot(ctx context.Context, conn *Conn, read func(ctx context.Context, q Querier, commitTimestamps bool, nextXID uint64) error) error {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin a snapshot: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	ts, next, err := snapshotFacts(ctx, tx)
	if err != nil {
		return err
	}
	return read(ctx, tx, ts, next)
}

func snapshotFacts(ctx context.Context, q Querier) (bool, uint64, error) {
	var on bool
	var next uint64
	err := q.QueryRow(ctx, `SELECT current_setting('track_commit_timestamp')::bool,
		pg_snapshot_xmax(pg_current_snapshot())::text::bigint`).Scan(&on, &next)
	if err != nil {
		return false, 0, fmt.Errorf("read track_commit_timestamp and the next transaction id: %w", err)
	}
	return on, next, nil
}

// TableRow is one row of the outbox table read for republishing, not yet an event: its
// column values as the server's output functions print them (as pgoutput sends them), its
// transaction and, when tracked, its commit time.
type TableRow struct {
	ID      string
	Channel string
	XID     uint32    // xmin
	FullXID uint64    // xmin widened against the snapshot's next id
	Commit  time.Time // pg_xact_commit_timestamp(xmin); zero when not tracked
	values  []value
}

// OutboxRows holds the outbox table's rows as read by [ReadOutboxRows], with what [OutboxRows.Event]
// needs to build their events.
type OutboxRows struct {
	Rows []TableRow
	dec  *Decoder
	rel  *relation
}

// ReadOutboxRows reads every row of the outbox table t in q's transaction (in the snapshot of
// [RecreateSlot]: exactly the rows the new slot will not stream), with their transaction ids
// and, with commitTimestamps, their commit times. It checks the configured columns as the
// relay's decoder does (a [*SchemaError] when one is missing).
func ReadOutboxRows(ctx context.Context, q Querier, t Table, commitTimestamps bool, nextXID uint64) (*OutboxRows, error) {
	commit := "NULL::bigint"
	if commitTimestamps {
		commit = "(extract(epoch FROM pg_xact_commit_timestamp(o.xmin)) * 1000000)::bigint"
	}
	// Simple protocol: every value in text form, from the type's output function, as pgoutput
	// sends it; the row's own columns first, then xmin and the commit time.
	rows, err := q.Query(ctx, "SELECT o.*, o.xmin::text, "+commit+"::text FROM "+t.QualifiedName()+" o", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", t.QualifiedName(), err)
	}
	defer rows.Close()
	fds := rows.FieldDescriptions()
	n := len(fds) - 2
	rel := &relation{name: t.QualifiedName(), ncols: n, outbox: true}
	types := make([]uint32, n)
	for i := range n {
		rel.columns = append(rel.columns, fds[i].Name)
		types[i] = fds[i].DataTypeOID
	}
	dec := NewDecoder(t)
	dec.resolve(rel, types)
	if rel.err != nil {
		return nil, rel.err
	}
	out := &OutboxRows{dec: dec, rel: rel}
	for rows.Next() {
		raw := rows.RawValues()
		vals := make([]value, n)
		for i := range n {
			if raw[i] != nil {
				vals[i] = append(value{}, raw[i]...)
			}
		}
		r := TableRow{ID: string(vals[rel.id]), Channel: string(vals[rel.channel]), values: vals}
		xid, err := strconv.ParseUint(string(raw[n]), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("read %s: xmin %q: %w", t.QualifiedName(), raw[n], err)
		}
		r.XID = uint32(xid)
		r.FullXID = WidenXID(r.XID, nextXID)
		if raw[n+1] != nil {
			us, err := strconv.ParseInt(string(raw[n+1]), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("read %s: commit time %q: %w", t.QualifiedName(), raw[n+1], err)
			}
			r.Commit = time.UnixMicro(us).UTC()
		}
		out.Rows = append(out.Rows, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", t.QualifiedName(), err)
	}
	return out, nil
}

// SortRows orders rows for republishing. With commit times (track_commit_timestamp), by
// commit time, then transaction, then id: across transactions the order PostgreSQL stamped
// their commits, within one the insert order (ids from one sequence). Rows whose commit time
// is unknown (committed before tracking was turned on) come first, by id. Without commit times,
// by id alone: each channel in id order, which is the commit order only where no two
// transactions writing the channel overlapped.
func SortRows(rows []TableRow) {
	slices.SortStableFunc(rows, func(a, b TableRow) int {
		return cmp.Or(
			a.Commit.Compare(b.Commit),
			cmp.Compare(a.FullXID, b.FullXID)*boolInt(!a.Commit.IsZero()),
			compareIDs(a.ID, b.ID),
		)
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// compareIDs compares ids as integers when both are (bigserial), else as text.
func compareIDs(a, b string) int {
	x, errA := strconv.ParseInt(a, 10, 64)
	y, errB := strconv.ParseInt(b, 10, 64)
	if errA == nil && errB == nil {
		return cmp.Compare(x, y)
	}
	return cmp.Compare(a, b)
}

// Event builds the event of row r as the relay would from its insert — same headers, same
// bad-row rules — at position pos, with the source header source (nil: none). A row that cannot
// be published gives a [*BadRowError].
func (o *OutboxRows) Event(r TableRow, pos record.Position, commitTime time.Time, source []byte) (Event, error) {
	d := o.dec
	d.source = source
	d.txn = Begin{FinalLSN: pglogrepl.LSN(pos.LSN), CommitTime: commitTime, XID: r.XID, FullXID: r.FullXID}
	m, err := d.row(o.rel, r.values, int(pos.Index))
	if err != nil {
		return Event{}, err
	}
	row, ok := m.(Row)
	if !ok {
		return Event{}, errors.New("capture: the outbox row gave no event")
	}
	return row.Event, nil
}

// IdentifySource reads the source of the slot's stream (system and timeline; routing is
// [RoutingOf]) over a replication connection, without touching any slot: for a dry run.
func IdentifySource(ctx context.Context, url, slot, routing string) (record.Source, error) {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return record.Source{}, fmt.Errorf("parse database URL: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "pgoutbox recover"
	repl, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return record.Source{}, ClassifyConnectError(err)
	}
	defer func() { _ = repl.Close(context.WithoutCancel(ctx)) }()
	return identify(ctx, repl, slot, routing)
}
