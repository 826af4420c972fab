package capture

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is what the catalog functions need of a normal (non-replication) connection;
// *pgx.Conn and *pgxpool.Pool satisfy it.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ServerInfo is what the relay checks of the server before streaming.
type ServerInfo struct {
	VersionNum int    // server_version_num, e.g. 150018
	WALLevel   string // must be "logical"
	// MaxSlotWALKeepSize is max_slot_wal_keep_size in bytes; -1 means unbounded: a stalled slot
	// can then fill the disk.
	MaxSlotWALKeepSize int64
	// IdleSlotTimeout is idle_replication_slot_timeout (PostgreSQL 18+); 0 means off or not
	// available. The server invalidates a slot that no connection has streamed from for longer.
	IdleSlotTimeout time.Duration
	// Replication reports whether the connected role may open replication connections.
	Replication bool
	User        string
}

// IdleSlotTimeoutWarning explains what a non-zero idle_replication_slot_timeout means for the
// relay, or returns "" when it is off.
func (si ServerInfo) IdleSlotTimeoutWarning() string {
	if si.IdleSlotTimeout <= 0 {
		return ""
	}
	return fmt.Sprintf("idle_replication_slot_timeout is %s: PostgreSQL invalidates the slot at the first checkpoint "+
		"after no relay has streamed from it for %s (an idle slot: every relay stopped, including a standby relay waiting "+
		"to take over, which does not stream); the slot is then lost and events from that point can only be re-published "+
		"from the table. Keep relay outages well below it, or turn it off "+
		"(ALTER SYSTEM SET idle_replication_slot_timeout = 0; SELECT pg_reload_conf())", si.IdleSlotTimeout, si.IdleSlotTimeout)
}

// CheckServer reads the server settings the relay depends on. It returns an error wrapping
// [ErrWALLevel] when wal_level is not logical, and [ErrNotReplicationRole] when the role lacks
// the REPLICATION attribute; both say how to fix it.
func CheckServer(ctx context.Context, q Querier) (ServerInfo, error) {
	var si ServerInfo
	var keepMB, idleSeconds int64
	err := q.QueryRow(ctx, `SELECT current_setting('server_version_num')::int,
		current_setting('wal_level'),
		current_setting('max_slot_wal_keep_size', true),
		coalesce((SELECT setting::bigint * CASE unit WHEN 'min' THEN 60 WHEN 'h' THEN 3600 WHEN 'd' THEN 86400 ELSE 1 END
			FROM pg_settings WHERE name = 'idle_replication_slot_timeout'), 0),
		r.rolreplication OR r.rolsuper, current_user
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&si.VersionNum, &si.WALLevel, &keepSetting{&keepMB}, &idleSeconds, &si.Replication, &si.User)
	if err != nil {
		return si, fmt.Errorf("read server settings: %w", err)
	}
	si.MaxSlotWALKeepSize = keepMB
	si.IdleSlotTimeout = time.Duration(idleSeconds) * time.Second
	if si.VersionNum < 100000 {
		return si, fmt.Errorf("%w: server version %d; pgoutput needs PostgreSQL 10 or later", ErrServer, si.VersionNum)
	}
	if si.WALLevel != "logical" {
		return si, fmt.Errorf("%w: wal_level is %s; set wal_level=logical and restart PostgreSQL", ErrWALLevel, si.WALLevel)
	}
	if !si.Replication {
		return si, fmt.Errorf("%w: role %q cannot stream changes; run ALTER ROLE %s REPLICATION as a superuser",
			ErrNotReplicationRole, si.User, quote(si.User))
	}
	return si, nil
}

// keepSetting scans max_slot_wal_keep_size ("-1", "4GB", "1024MB", NULL before PostgreSQL 13) into bytes.
type keepSetting struct{ bytes *int64 }

func (k *keepSetting) Scan(src any) error {
	s, _ := src.(string)
	n, err := parseSize(s)
	*k.bytes = n
	return err
}

// parseSize converts a PostgreSQL memory setting as SHOW prints it into bytes; "" and "-1" are -1.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "-1" {
		return -1, nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			var n int64
			if _, err := fmt.Sscan(num, &n); err != nil {
				return 0, fmt.Errorf("parse size %q: %w", s, err)
			}
			return n * u.mult, nil
		}
	}
	var n int64 // a bare number is in megabytes for max_slot_wal_keep_size
	if _, err := fmt.Sscan(s, &n); err != nil {
		return 0, fmt.Errorf("parse size %q: %w", s, err)
	}
	return n << 20, nil
}

// tableColumns returns the outbox table's column names, or an error wrapping [ErrNoTable].
func tableColumns(ctx context.Context, q Querier, t Table) (map[string]bool, error) {
	rows, err := q.Query(ctx, `SELECT a.attname FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped`, t.Schema, t.Name)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", t.QualifiedName(), err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", t.QualifiedName(), err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: table %s does not exist: create it with `pgoutbox setup` or set --table",
			ErrNoTable, t.QualifiedName())
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set, nil
}

// CheckTable verifies that the outbox table exists and has every configured column; all missing
// columns are reported at once as [*SchemaError]s.
func CheckTable(ctx context.Context, q Querier, t Table) error {
	have, err := tableColumns(ctx, q, t)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range t.columns() {
		if !have[c.name] {
			errs = append(errs, &SchemaError{Table: t.QualifiedName(), Column: c.name, Role: c.role, flag: c.flag})
		}
	}
	return errors.Join(errs...)
}

// EnsureTable creates the outbox table when it does not exist, or verifies the existing one.
func EnsureTable(ctx context.Context, q Querier, t Table) (created bool, err error) {
	if _, err := tableColumns(ctx, q, t); errors.Is(err, ErrNoTable) {
		if _, err := q.Exec(ctx, CreateTableSQL(t)); err != nil {
			return false, fmt.Errorf("create table %s: %w", t.QualifiedName(), err)
		}
		return true, nil
	}
	return false, CheckTable(ctx, q, t)
}

// CheckPublication verifies that the publication exists, publishes inserts and includes the
// outbox table.
func CheckPublication(ctx context.Context, q Querier, publication string, t Table) error {
	st, err := ReadPublicationState(ctx, q, publication, t)
	if err != nil {
		return err
	}
	return st.Problem(publication, t)
}

// EnsurePublication creates the publication when it does not exist, or verifies the existing one.
func EnsurePublication(ctx context.Context, q Querier, publication string, t Table) (created bool, err error) {
	err = CheckPublication(ctx, q, publication, t)
	var exists bool
	if errors.Is(err, ErrNoPublication) {
		if qerr := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`,
			publication).Scan(&exists); qerr != nil {
			return false, fmt.Errorf("read publication %q: %w", publication, qerr)
		}
		if !exists {
			if _, err := q.Exec(ctx, CreatePublicationSQL(publication, t)); err != nil {
				return false, fmt.Errorf("create publication %q: %w", publication, err)
			}
			return true, nil
		}
	}
	return false, err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
