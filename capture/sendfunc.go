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
// schema (see [SendFunctionsSQL]) unless they exist with the same bodies, in which case it only
// verifies them: a role that may not create functions in the schema can then run setup once
// the schema's owner ran the statements of `pgoutbox setup --print-sql`. The form follows the
// database: [SendInvoker] when PUBLIC may execute pg_logical_emit_message (the default),
// [SendDefiner] when a hardened database revoked that. An advisory lock serializes concurrent
// setups of one schema.
func EnsureSendFunctions(ctx context.Context, q TxQuerier, t Table, prefix string) (created bool, err error) {
	tx, err := q.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("install %s: %w", SendFunction, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('pgoutbox_send ' || $1))`, t.Schema); err != nil {
		return false, fmt.Errorf("install %s: %w", SendFunction, err)
	}
	sec, err := sendSecurity(ctx, tx)
	if err != nil {
		return false, err
	}
	same, err := sendFunctionsInstalled(ctx, tx, t, prefix, sec)
	if err != nil || same {
		return false, err
	}
	for _, stmt := range SendFunctionsSQL(t, prefix, sec) {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42501" {
				advice := "let the schema's owner run the CREATE FUNCTION and REVOKE statements of `pgoutbox setup --print-sql`"
				if sec == SendDefiner {
					// --print-sql prints the invoker form, which cannot work here.
					advice = "PUBLIC may not execute pg_logical_emit_message in this database, so the functions must be " +
						"SECURITY DEFINER: run `pgoutbox setup` as the schema's owner"
				}
				return false, fmt.Errorf("%w: may not install %s in schema %s (%s): %s, or GRANT CREATE ON SCHEMA %s to this role",
					ErrPrivilege, SendFunction, quote(t.Schema), pgErr.Message, advice, quote(t.Schema))
			}
			return false, fmt.Errorf("install %s in schema %s: %w", SendFunction, quote(t.Schema), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("install %s: %w", SendFunction, err)
	}
	return true, nil
}

// sendSecurity is the form of the send functions that works in the database: SendInvoker when
// PUBLIC may execute every pg_logical_emit_message that takes text (its signature changed in
// PostgreSQL 17), SendDefiner otherwise.
func sendSecurity(ctx context.Context, q Querier) (SendSecurity, error) {
	var public bool
	if err := q.QueryRow(ctx, `SELECT coalesce(bool_and(has_function_privilege('public', oid, 'EXECUTE')), false)
		FROM pg_catalog.pg_proc WHERE proname = 'pg_logical_emit_message'
		AND pronamespace = 'pg_catalog'::regnamespace AND proargtypes[2] = 'text'::regtype`).Scan(&public); err != nil {
		return 0, fmt.Errorf("read the privileges of pg_logical_emit_message: %w", err)
	}
	if public {
		return SendInvoker, nil
	}
	return SendDefiner, nil
}

// sendFunctionsInstalled reports whether the schema holds the send functions of the form sec
// with the prefix, and the function raising a bad channel's error, as setup writes them.
func sendFunctionsInstalled(ctx context.Context, q Querier, t Table, prefix string, sec SendSecurity) (bool, error) {
	type fn struct{ identity, body string }
	want := []fn{{rejectIdentity(t), rejectBody}}
	for _, f := range sendFunctions {
		want = append(want, fn{f.identity(t), f.body(t, prefix, sec)})
	}
	for _, f := range want {
		var src *string
		if err := q.QueryRow(ctx, `SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure($1)`, f.identity).Scan(&src); err != nil &&
			!errors.Is(err, pgx.ErrNoRows) {
			return false, fmt.Errorf("read function %s: %w", f.identity, err)
		}
		if src == nil || *src != f.body {
			return false, nil
		}
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
