package capture

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrRetentionFixed marks a DELETE of published rows that fails for a reason a retry cannot fix
// (the role lost the privilege, the table or its id column is gone): the relay must stop.
var ErrRetentionFixed = errors.New("retention: cannot delete published rows")

// OutboxDeleter deletes published rows from the outbox table by id, on its own connection. It
// is the database half of --retention=delete-after-publish; when to delete, and when to
// acknowledge, is the relay's business.
type OutboxDeleter struct {
	url   string
	table Table
	conn  *pgx.Conn
	sql   string
}

// NewOutboxDeleter returns a deleter for table; [OutboxDeleter.Prepare] connects it.
func NewOutboxDeleter(url string, table Table) *OutboxDeleter {
	return &OutboxDeleter{url: url, table: table}
}

// Prepare connects, checks the privileges (CheckRetention) and builds the statement for the id
// column's type.
func (d *OutboxDeleter) Prepare(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, d.url)
	if err != nil {
		return ClassifyConnectError(err)
	}
	d.conn = conn
	typ, err := CheckRetention(ctx, conn, d.table)
	if err != nil {
		return err
	}
	// The ids travel as text and are cast to the column's type, so the primary key index is used.
	id := pgx.Identifier{d.table.ID}.Sanitize()
	d.sql = fmt.Sprintf("DELETE FROM %s WHERE %s = ANY($1::text[]::%s[]) RETURNING %s::text", d.table.QualifiedName(), id, typ, id)
	return nil
}

// CheckRetention checks that the role may delete published rows from t (DELETE, and SELECT on
// the id column for DELETE … RETURNING) and returns the id column's type. The relay checks it at
// start, before it streams, so that a missing grant stops it at once with the GRANT to run.
func CheckRetention(ctx context.Context, q Querier, t Table) (idType string, err error) {
	var canDelete, canSelectID bool
	err = q.QueryRow(ctx, `SELECT format_type(a.atttypid, a.atttypmod), has_table_privilege(c.oid, 'DELETE'),
			has_column_privilege(c.oid, a.attnum, 'SELECT')
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND NOT a.attisdropped`,
		t.Schema, t.Name, t.ID).Scan(&idType, &canDelete, &canSelectID)
	if err != nil {
		return "", fmt.Errorf("retention: read the id column %q of %s: %w", t.ID, t.QualifiedName(), err)
	}
	if !canDelete {
		return "", fmt.Errorf("%w: the role may not DELETE from %s: GRANT DELETE ON %s TO <role>, or use --retention=none",
			ErrRetentionFixed, t.QualifiedName(), t.QualifiedName())
	}
	if !canSelectID {
		return "", fmt.Errorf("%w: the role may not read the id column %q of %s (DELETE … RETURNING needs it): GRANT SELECT (%s) ON %s TO <role>, or use --retention=none",
			ErrRetentionFixed, t.ID, t.QualifiedName(), pgx.Identifier{t.ID}.Sanitize(), t.QualifiedName())
	}
	return idType, nil
}

// Delete removes the rows with these ids and returns the ids it removed. An error wrapping
// [ErrRetentionFixed] will not go away by retrying; after any other error the connection is
// closed and the next call opens a new one.
func (d *OutboxDeleter) Delete(ctx context.Context, ids []string) ([]string, error) {
	if d.sql == "" {
		return nil, errors.New("retention: Delete before Prepare")
	}
	if d.conn == nil {
		conn, err := pgx.Connect(ctx, d.url)
		if err != nil {
			return nil, ClassifyConnectError(err)
		}
		d.conn = conn
	}
	rows, err := d.conn.Query(ctx, d.sql, ids)
	if err == nil {
		var deleted []string
		if deleted, err = pgx.CollectRows(rows, pgx.RowTo[string]); err == nil {
			return deleted, nil
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42501" || pgErr.Code == "42P01" || pgErr.Code == "42703") {
		return nil, fmt.Errorf("%w from %s: %w; fix the privilege or table, or use --retention=none", ErrRetentionFixed, d.table.QualifiedName(), err)
	}
	d.Close()
	return nil, err
}

// Close closes the connection. It is idempotent.
func (d *OutboxDeleter) Close() {
	if d.conn != nil {
		_ = d.conn.Close(context.Background())
		d.conn = nil
	}
}
