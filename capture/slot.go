package capture

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// Slot is our replication slot's row of pg_replication_slots, with the server figures that
// tell how much WAL it holds back, as read at one moment by [ReadSlot] (or by [Stream.Open] over
// the replication connection). See
// https://www.postgresql.org/docs/current/view-pg-replication-slots.html for the columns.
type Slot struct {
	Name string
	// Exists is false when the server has no slot of that name; the slot's fields are then zero,
	// and only CurrentLSN, MaxSlotWALKeepSize and ConnDatabase are set.
	Exists            bool
	Plugin            string
	Database          string        // the database the slot decodes
	ConfirmedFlushLSN pglogrepl.LSN // the position streaming resumes from; 0 when NULL
	RestartLSN        pglogrepl.LSN // the oldest WAL the slot keeps; 0 when NULL
	WALStatus         string        // reserved, extended, unreserved, lost ("" before PostgreSQL 13)
	Active            bool
	ActivePID         int32 // 0 when not active

	// Conflicting (PostgreSQL 16 and later) reports a logical slot on a standby invalidated by a
	// conflict with recovery.
	Conflicting bool
	// InvalidationReason (PostgreSQL 17 and later) says why the slot was invalidated
	// (wal_removed, rows_removed, wal_level_insufficient, idle_timeout); "" while it is valid.
	InvalidationReason string
	// InactiveSince (PostgreSQL 17 and later) is when the slot stopped being streamed; zero
	// while it is active, and before PostgreSQL 17.
	InactiveSince time.Time
	// Failover and Synced (PostgreSQL 17 and later): the slot is synchronized to standbys, and
	// this copy is such a synchronized copy.
	Failover, Synced bool

	UnconfirmedBytes   int64         // CurrentLSN - confirmed_flush_lsn: what Kafka has not acknowledged
	RetainedBytes      int64         // CurrentLSN - restart_lsn: what the slot keeps on disk
	SafeWALBytes       int64         // safe_wal_size: bytes left before invalidation; -1 when unbounded
	MaxSlotWALKeepSize int64         // bytes; -1 = unbounded
	CurrentLSN         pglogrepl.LSN // pg_current_wal_lsn() (the last replayed position on a standby)
	ConnDatabase       string        // current_database() of the connection that read the slot
}

// Lost reports whether the slot was invalidated: it cannot be streamed again, and events
// committed after its confirmed position may be missing.
func (s Slot) Lost() bool {
	return s.Exists && (s.WALStatus == "lost" || s.InvalidationReason != "" || s.Conflicting)
}

// lostDetail says how the server shows that the slot was invalidated.
func (s Slot) lostDetail() string {
	var d []string
	if s.WALStatus == "lost" {
		d = append(d, "wal_status=lost")
	}
	if s.InvalidationReason != "" {
		d = append(d, "invalidation_reason="+s.InvalidationReason)
	}
	if s.Conflicting {
		d = append(d, "conflicting=true")
	}
	return strings.Join(d, ", ")
}

// check returns why the relay cannot use the slot, or nil: it is missing, another plugin's or
// another database's, or invalidated. A slot in use by another process is usable (this one
// stands by), so it is not checked here.
func (s Slot) check() error {
	switch {
	case !s.Exists:
		return errSlotMissing(s.Name)
	case s.Plugin != outputPlugin:
		return errSlotPlugin(s.Name, s.Plugin)
	case s.ConnDatabase != "" && s.Database != s.ConnDatabase:
		return errSlotDatabase(s.Name, s.Database, s.ConnDatabase)
	case s.Lost():
		return errSlotInvalidated(s.Name, s.lostDetail(), s.ConfirmedFlushLSN)
	}
	return nil
}

// checkStreamable is check, and also that no other process streams the slot and that it has a
// position to resume from.
func (s Slot) checkStreamable() error {
	if err := s.check(); err != nil {
		return err
	}
	switch {
	case s.Active:
		return errSlotInUse(s.Name, s.ActivePID)
	case s.ConfirmedFlushLSN == 0:
		return errSlotNoPosition(s.Name)
	}
	return nil
}

// checkCopyable is checkStreamable for a copy of the slot: the slot may be active.
func (s Slot) checkCopyable() error {
	if err := s.check(); err != nil {
		return err
	}
	if s.ConfirmedFlushLSN == 0 {
		return errSlotNoPosition(s.Name)
	}
	return nil
}

// ReadSlot reads our slot's row and the server's WAL figures over a normal connection. A
// missing slot is not an error: Exists is false.
func ReadSlot(ctx context.Context, q Querier, slot string) (Slot, error) {
	return readSlot(ctx, querierText(q), slot)
}

// CheckSlot reads the slot and verifies that it is a pgoutput slot of the connected database
// that still has its WAL. It returns an error wrapping [ErrNoSlot], [ErrSlotPlugin] or
// [ErrSlotLost] that says what to do.
func CheckSlot(ctx context.Context, q Querier, slot string) (Slot, error) {
	s, err := ReadSlot(ctx, q, slot)
	if err != nil {
		return s, err
	}
	return s, s.check()
}

// EnsureSlot creates the logical slot when it does not exist, or verifies the existing one.
// Create the publication first: pgoutput looks publications up as of the WAL it decodes.
func EnsureSlot(ctx context.Context, q Querier, slot string) (created bool, err error) {
	_, err = CheckSlot(ctx, q, slot)
	if !errors.Is(err, ErrNoSlot) {
		return false, err
	}
	if _, err := q.Exec(ctx, CreateSlotSQL(slot)); err != nil {
		return false, fmt.Errorf("create replication slot %q: %w", slot, err)
	}
	return true, nil
}

// textQuery runs one SQL statement and returns its result's column names and first row as text
// (nil for NULL); row is nil when the result is empty.
type textQuery func(ctx context.Context, sql string) (fields []string, row [][]byte, err error)

// querierText runs queries on a normal connection. Every column of the slot query is text, so
// the raw values are text whatever the protocol.
func querierText(q Querier) textQuery {
	return func(ctx context.Context, sql string) ([]string, [][]byte, error) {
		rows, err := q.Query(ctx, sql)
		if err != nil {
			return nil, nil, err
		}
		fields := make([]string, len(rows.FieldDescriptions()))
		for i, f := range rows.FieldDescriptions() {
			fields[i] = f.Name
		}
		var row [][]byte
		if rows.Next() {
			for _, v := range rows.RawValues() {
				row = append(row, cloneOrNil(v))
			}
		}
		rows.Close()
		return fields, row, rows.Err()
	}
}

// connText runs queries on a replication connection, which takes simple-protocol SQL.
func connText(conn *pgconn.PgConn) textQuery {
	return func(ctx context.Context, sql string) ([]string, [][]byte, error) {
		res, err := conn.Exec(ctx, sql).ReadAll()
		if err != nil {
			return nil, nil, err
		}
		if len(res) == 0 {
			return nil, nil, nil
		}
		fields := make([]string, len(res[0].FieldDescriptions))
		for i, f := range res[0].FieldDescriptions {
			fields[i] = f.Name
		}
		if len(res[0].Rows) == 0 {
			return fields, nil, nil
		}
		return fields, res[0].Rows[0], nil
	}
}

func cloneOrNil(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// readSlot reads the server version, then the slot with the columns that version has.
func readSlot(ctx context.Context, run textQuery, slot string) (Slot, error) {
	_, row, err := run(ctx, `SELECT current_setting('server_version_num')`)
	if err != nil {
		return Slot{Name: slot}, fmt.Errorf("read slot %q: server version: %w", slot, err)
	}
	if len(row) != 1 {
		return Slot{Name: slot}, fmt.Errorf("read slot %q: server version: no answer", slot)
	}
	version, err := strconv.Atoi(string(row[0]))
	if err != nil {
		return Slot{Name: slot}, fmt.Errorf("read slot %q: server version %q: %w", slot, row[0], err)
	}
	fields, row, err := run(ctx, slotQuery(version, slot))
	if err != nil {
		return Slot{Name: slot}, fmt.Errorf("read slot %q: %w", slot, err)
	}
	if row == nil { // the query joins onto one row, so this does not happen
		return Slot{Name: slot}, fmt.Errorf("read slot %q: the query returned no row", slot)
	}
	return parseSlot(slot, fields, row)
}

// slotColumn is one column of the slot query: its name in the result, its expression (every
// one is text), and the first server_version_num that has it.
type slotColumn struct {
	name, expr string
	since      int
}

// slotColumns are the columns of the slot query. s is the slot's row (NULLs when it is
// missing), cur.lsn the server's current position.
var slotColumns = []slotColumn{
	{"current_database", "current_database()::text", 0},
	{"current_lsn", "cur.lsn::text", 0},
	{"max_slot_wal_keep_size", "current_setting('max_slot_wal_keep_size', true)", 0},
	{"slot_name", "s.slot_name::text", 0},
	{"plugin", "s.plugin::text", 0},
	{"database", "s.database::text", 0},
	{"confirmed_flush_lsn", "s.confirmed_flush_lsn::text", 0},
	{"restart_lsn", "s.restart_lsn::text", 0},
	{"active", "s.active::text", 0},
	{"active_pid", "s.active_pid::text", 0},
	{"unconfirmed_bytes", "(cur.lsn - s.confirmed_flush_lsn)::bigint::text", 0},
	{"retained_bytes", "(cur.lsn - s.restart_lsn)::bigint::text", 0},
	{"wal_status", "s.wal_status", 130000},
	{"safe_wal_size", "s.safe_wal_size::text", 130000},
	{"conflicting", "s.conflicting::text", 160000},
	{"invalidation_reason", "s.invalidation_reason", 170000},
	// As seconds since the epoch, so that DateStyle and TimeZone do not matter.
	{"inactive_since", "extract(epoch FROM s.inactive_since)::text", 170000},
	{"failover", "s.failover::text", 170000},
	{"synced", "s.synced::text", 170000},
}

// slotQuery returns the query of the slot's row for a server of the given server_version_num.
// It returns one row also when the slot is missing (slot_name is then NULL), so that the
// server's figures are read either way. The slot name is a literal: the replication connection
// takes no parameters.
func slotQuery(version int, slot string) string {
	var cols []string
	for _, c := range slotColumns {
		if version >= c.since {
			cols = append(cols, c.expr+" AS "+c.name)
		}
	}
	return "SELECT " + strings.Join(cols, ", ") +
		" FROM (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS lsn) cur" +
		" LEFT JOIN pg_replication_slots s ON s.slot_name = " + literal(slot)
}

// parseSlot is the pure twin of the slot query: it turns the result's column names and one row
// of text values (nil = NULL) into a Slot. Columns it does not know are ignored, and columns
// the server version lacks keep their zero value.
func parseSlot(slot string, fields []string, row [][]byte) (Slot, error) {
	s := Slot{Name: slot, SafeWALBytes: -1, MaxSlotWALKeepSize: -1}
	if len(fields) != len(row) {
		return s, fmt.Errorf("read slot %q: %d columns but %d values", slot, len(fields), len(row))
	}
	for i, name := range fields {
		v := row[i]
		if v == nil {
			continue
		}
		if err := s.set(name, string(v)); err != nil {
			return s, fmt.Errorf("read slot %q: column %s: %w", slot, name, err)
		}
	}
	return s, nil
}

// set parses one non-NULL column into s.
func (s *Slot) set(name, v string) error {
	var err error
	switch name {
	case "current_database":
		s.ConnDatabase = v
	case "current_lsn":
		s.CurrentLSN, err = pglogrepl.ParseLSN(v)
	case "max_slot_wal_keep_size":
		s.MaxSlotWALKeepSize, err = parseSize(v)
	case "slot_name":
		s.Exists = true
	case "plugin":
		s.Plugin = v
	case "database":
		s.Database = v
	case "confirmed_flush_lsn":
		s.ConfirmedFlushLSN, err = pglogrepl.ParseLSN(v)
	case "restart_lsn":
		s.RestartLSN, err = pglogrepl.ParseLSN(v)
	case "active":
		s.Active, err = parseBool(v)
	case "active_pid":
		var pid int64
		pid, err = strconv.ParseInt(v, 10, 32)
		s.ActivePID = int32(pid)
	case "unconfirmed_bytes":
		s.UnconfirmedBytes, err = strconv.ParseInt(v, 10, 64)
	case "retained_bytes":
		s.RetainedBytes, err = strconv.ParseInt(v, 10, 64)
	case "wal_status":
		s.WALStatus = v
	case "safe_wal_size":
		s.SafeWALBytes, err = strconv.ParseInt(v, 10, 64)
	case "conflicting":
		s.Conflicting, err = parseBool(v)
	case "invalidation_reason":
		s.InvalidationReason = v
	case "inactive_since":
		s.InactiveSince, err = parseEpoch(v)
	case "failover":
		s.Failover, err = parseBool(v)
	case "synced":
		s.Synced, err = parseBool(v)
	}
	return err
}

// parseBool reads a boolean as PostgreSQL prints it: "true"/"false" as ::text, "t"/"f" as a
// raw text-format value.
func parseBool(v string) (bool, error) {
	switch v {
	case "true", "t":
		return true, nil
	case "false", "f":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean: %q", v)
}

// parseEpoch reads seconds since the epoch with a fraction ("1718000000.123456").
func parseEpoch(v string) (time.Time, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return time.Time{}, fmt.Errorf("not a time: %q", v)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3).UTC(), nil
}

// The slot errors, each written once. Each one names the slot, what is wrong, and the fix;
// none advises dropping a slot that may still be of use: a drop gives up every event after the
// slot's confirmed position that is not in Kafka yet.

// errSlotMissing: the slot does not exist (before streaming started; see [SlotLostError] for a
// slot that disappears under a running relay).
func errSlotMissing(slot string) error {
	return fmt.Errorf("%w: replication slot %q does not exist: create it with `pgoutbox setup`", ErrNoSlot, slot)
}

// errSlotPlugin: the slot belongs to another decoder; it may be another consumer's.
func errSlotPlugin(slot, plugin string) error {
	return fmt.Errorf("%w: replication slot %q uses plugin %q, pgoutbox needs %q: it is not pgoutbox's slot "+
		"(another consumer may use it): set --slot to a name of its own and run `pgoutbox setup`",
		ErrSlotPlugin, slot, plugin, outputPlugin)
}

// errSlotDatabase: the slot decodes another database.
func errSlotDatabase(slot, slotDB, connDB string) error {
	return fmt.Errorf("%w: replication slot %q belongs to database %q, not %q: set --slot to another name",
		ErrSlotPlugin, slot, slotDB, connDB)
}

// errSlotInUse: another process streams the slot; retrying makes this process a hot standby.
func errSlotInUse(slot string, pid int32) error {
	by := "another process"
	if pid != 0 {
		by = fmt.Sprintf("process %d", pid)
	}
	return fmt.Errorf("%w: replication slot %q is streamed by %s; waiting for it to stop", ErrSlotInUse, slot, by)
}

// errSlotNoPosition: a pgoutput slot without confirmed_flush_lsn, which happens while another
// session is still creating it.
func errSlotNoPosition(slot string) error {
	return fmt.Errorf("%w: replication slot %q has no confirmed position yet (is it still being created?): "+
		"start pgoutbox again once `pgoutbox setup` has finished, or set --slot to a new name and run `pgoutbox setup`",
		ErrSlotPlugin, slot)
}

// errSlotInvalidated: the server invalidated the slot. It cannot be streamed again: `pgoutbox
// recover` creates it again and republishes what the outbox table still holds.
func errSlotInvalidated(slot, detail string, confirmed pglogrepl.LSN) error {
	from := afterPosition(confirmed)
	if detail != "" {
		detail = " (" + detail + ")"
	}
	return &LostSlotError{From: confirmed, err: fmt.Errorf("%w: replication slot %q was invalidated%s: events committed after %s may be missing from Kafka; %s",
		ErrSlotLost, slot, detail, from, recoverLostAdvice)}
}

// LostSlotError is a lost slot's error (it matches [ErrSlotLost]), with the position after which
// events may be missing, for the record of the loss (see [GapSlotLost]).
type LostSlotError struct {
	From pglogrepl.LSN // 0 when unknown
	err  error
}

func (e *LostSlotError) Error() string { return e.err.Error() }
func (e *LostSlotError) Unwrap() error { return e.err }

// SlotLostError returns the error of a slot that a running relay lost, matching [ErrSlotLost]:
// invalidated (s.Lost()), or gone — dropped while the relay streamed from it, which a restart
// must not take for a first start (a missing slot before the first session is [ErrNoSlot]).
// lastConfirmed is the last position the relay knows confirmed, used when the slot is gone;
// 0 when unknown.
func SlotLostError(s Slot, lastConfirmed pglogrepl.LSN) error {
	if s.Exists {
		return errSlotInvalidated(s.Name, s.lostDetail(), max(s.ConfirmedFlushLSN, lastConfirmed))
	}
	from := afterPosition(lastConfirmed)
	return &LostSlotError{From: lastConfirmed, err: fmt.Errorf("%w: replication slot %q was dropped while pgoutbox streamed from it: events committed after %s may be missing from Kafka; "+
		"run `pgoutbox recover` to see what it will do, then `pgoutbox recover --apply` (it creates the slot again, republishes from the outbox "+
		"table the rows that are not in Kafka, and tells clients to re-sync)",
		ErrSlotLost, s.Name, from)}
}

func afterPosition(lsn pglogrepl.LSN) string {
	if lsn == 0 {
		return "its last confirmed position"
	}
	return lsn.String()
}
