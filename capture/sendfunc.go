package capture

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TxQuerier is a [Querier] that can also open a transaction (*pgx.Conn, *pgxpool.Pool).
type TxQuerier interface {
	Querier
	Begin(ctx context.Context) (pgx.Tx, error)
}

// EnsureSendFunctions installs pgoutbox_send and pgoutbox_send_bytes in the outbox table's
// schema (see [SendFunctionsSQL]) unless both exist with the same body, in which case it only
// verifies them: a role that may not create functions in the schema can then run setup once
// the schema's owner ran the statements of `pgoutbox setup --print-sql`. An advisory lock
// serializes concurrent setups of one schema.
func EnsureSendFunctions(ctx context.Context, q TxQuerier, t Table, prefix string) (created bool, err error) {
	tx, err := q.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("install %s: %w", SendFunction, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('pgoutbox_send ' || $1))`, t.Schema); err != nil {
		return false, fmt.Errorf("install %s: %w", SendFunction, err)
	}
	same := true
	for _, f := range sendFunctions {
		var src *string
		if err := tx.QueryRow(ctx, `SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure($1)`, f.identity(t)).Scan(&src); err != nil &&
			!errors.Is(err, pgx.ErrNoRows) {
			return false, fmt.Errorf("read function %s: %w", f.identity(t), err)
		}
		same = same && src != nil && *src == f.body(prefix)
	}
	if same {
		return false, nil
	}
	for _, stmt := range SendFunctionsSQL(t, prefix) {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42501" {
				return false, fmt.Errorf("%w: may not install %s in schema %s (%s): let the schema's owner run the CREATE FUNCTION "+
					"and REVOKE statements of `pgoutbox setup --print-sql`, or GRANT CREATE ON SCHEMA %s to this role",
					ErrPrivilege, SendFunction, quote(t.Schema), pgErr.Message, quote(t.Schema))
			}
			return false, fmt.Errorf("install %s in schema %s: %w", SendFunction, quote(t.Schema), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("install %s: %w", SendFunction, err)
	}
	return true, nil
}

// emittedPrefix finds the prefix literal in the body of a function installed by setup.
var emittedPrefix = regexp.MustCompile(`pg_logical_emit_message\(true, '((?:[^']|'')*)'`)

// CheckSendFunctions reports, with an error wrapping [ErrSchema], a pgoutbox_send or
// pgoutbox_send_bytes in the outbox table's schema that emits another prefix than the relay
// publishes: every event it sends would be ignored. Functions that do not exist are fine (the
// application may not use the WAL-only outbox).
func CheckSendFunctions(ctx context.Context, q Querier, t Table, prefix string) error {
	var errs []error
	for _, f := range sendFunctions {
		var src *string
		if err := q.QueryRow(ctx, `SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure($1)`, f.identity(t)).Scan(&src); err != nil &&
			!errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read function %s: %w", f.identity(t), err)
		}
		if src == nil {
			continue
		}
		m := emittedPrefix.FindStringSubmatch(*src)
		if m == nil {
			continue // not ours, or written by hand: nothing to compare
		}
		if got := strings.ReplaceAll(m[1], "''", "'"); got != prefix {
			errs = append(errs, fmt.Errorf("%w: function %s emits messages with prefix %q, but the relay publishes prefix %q "+
				"(--message-prefix): its events would be ignored; run `pgoutbox setup --message-prefix %s` or set --message-prefix %s",
				ErrSchema, f.identity(t), got, prefix, prefix, got))
		}
	}
	return errors.Join(errs...)
}
