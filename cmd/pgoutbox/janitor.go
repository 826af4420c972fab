package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/sink"
	"github.com/rs/zerolog"
)

// janitor implements --retention=delete-after-publish: it deletes outbox rows once Kafka has
// acknowledged them, in bounded batches, on its own connection.
//
// Acknowledgements reach the checkpoint ledger only AFTER the rows' DELETE committed. So the
// slot's confirmed position never passes a row that is still in the table: after a crash, the
// rows that were published but not yet deleted are after the confirmed position, are sent again
// and deleted then. The table holds exactly the rows not yet acknowledged (plus those whose
// DELETE is in flight), which is what makes recovery from a lost slot possible: re-publish what
// is still in the table. Kafka publishing does not wait for the janitor; only the confirmation
// (and, through the in-flight window, the reading) does.
type janitor struct {
	url   string
	table capture.Table
	batch int
	log   zerolog.Logger
	ack   func([]sink.Message) error // the ledger's acknowledgement, after the DELETE

	in   chan []sink.Message
	dead chan struct{} // closed when run returned: acked must not block then
	conn *pgx.Conn
	sql  string
}

func newJanitor(url string, table capture.Table, batch int, log zerolog.Logger, ack func([]sink.Message) error) *janitor {
	return &janitor{url: url, table: table, batch: batch, log: log.With().Str("component", "janitor").Logger(), ack: ack,
		in: make(chan []sink.Message, 64), dead: make(chan struct{})}
}

// prepare connects, checks the DELETE privilege, and builds the statement for the id column's type.
func (j *janitor) prepare(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, j.url)
	if err != nil {
		return capture.ClassifyConnectError(err)
	}
	j.conn = conn
	var typ string
	var canDelete, canSelectID bool
	err = conn.QueryRow(ctx, `SELECT format_type(a.atttypid, a.atttypmod), has_table_privilege(c.oid, 'DELETE'),
			has_column_privilege(c.oid, a.attnum, 'SELECT')
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND NOT a.attisdropped`,
		j.table.Schema, j.table.Name, j.table.ID).Scan(&typ, &canDelete, &canSelectID)
	if err != nil {
		return fmt.Errorf("retention: read the id column %q of %s: %w", j.table.ID, j.table.QualifiedName(), err)
	}
	if !canDelete {
		return fmt.Errorf("retention: the role may not DELETE from %s: GRANT DELETE ON %s TO <role>, or use --retention=none",
			j.table.QualifiedName(), j.table.QualifiedName())
	}
	if !canSelectID {
		return fmt.Errorf("retention: the role may not read the id column %q of %s (DELETE … RETURNING needs it): GRANT SELECT (%s) ON %s TO <role>, or use --retention=none",
			j.table.ID, j.table.QualifiedName(), pgx.Identifier{j.table.ID}.Sanitize(), j.table.QualifiedName())
	}
	// The ids travel as text and are cast to the column's type, so the primary key index is used.
	id := pgx.Identifier{j.table.ID}.Sanitize()
	j.sql = fmt.Sprintf("DELETE FROM %s WHERE %s = ANY($1::text[]::%s[]) RETURNING %s::text", j.table.QualifiedName(), id, typ, id)
	return nil
}

// acked is the sink's callback: it queues the round for deletion (blocking when the janitor is
// behind: that is backpressure, bounded by the in-flight window).
func (j *janitor) acked(msgs []sink.Message) {
	select {
	case j.in <- msgs:
	case <-j.dead: // the janitor failed; the relay is stopping and these stay unconfirmed
	}
}

// run deletes and acknowledges rounds until in is closed (drained) or ctx is done.
func (j *janitor) run(ctx context.Context) error {
	defer close(j.dead)
	defer func() {
		if j.conn != nil {
			_ = j.conn.Close(context.Background())
		}
	}()
	for msgs := range j.in {
		if err := j.delete(ctx, msgs); err != nil {
			return err
		}
		if err := j.ack(msgs); err != nil {
			return err
		}
	}
	return nil
}

// invisibleWait bounds how long the janitor looks for a published row that its DELETE does not
// find. PostgreSQL writes (and flushes) a commit record before the transaction becomes visible
// to other sessions, and the walsender may decode it in between: the row can be in Kafka before
// a DELETE can see it. That window is normally microseconds; it lasts longer only while the
// committing session waits for a synchronous standby. A row still not found after this long was
// deleted by someone else (or its commit is held up): the janitor logs it and goes on.
const invisibleWait = 10 * time.Second

// delete removes the rows of msgs, batch by batch, retrying transient failures and the rows
// whose commit is not visible yet.
func (j *janitor) delete(ctx context.Context, msgs []sink.Message) error {
	ids := make([]string, 0, len(msgs))
	for i := range msgs {
		if msgs[i].ID != "" {
			ids = append(ids, msgs[i].ID)
		}
	}
	for start := 0; start < len(ids); start += j.batch {
		if err := j.deleteChunk(ctx, ids[start:min(start+j.batch, len(ids))]); err != nil {
			return err
		}
	}
	return nil
}

func (j *janitor) deleteChunk(ctx context.Context, ids []string) error {
	first := time.Now()
	wait := 5 * time.Millisecond
	for attempt := 1; len(ids) > 0; attempt++ {
		deleted, err := j.exec(ctx, ids)
		if err != nil {
			if err := j.failed(ctx, err, len(ids), attempt); err != nil {
				return err
			}
			continue
		}
		ids = missing(ids, deleted)
		if len(ids) == 0 {
			return nil
		}
		if time.Since(first) > invisibleWait {
			j.log.Warn().Strs("ids", ids).Dur("waited", invisibleWait).
				Msg("published rows not found for deletion: deleted by another session, or their commit is still held up (synchronous replication?); leaving them")
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
	return nil
}

// failed handles a failed DELETE: a privilege or schema problem stops the relay; anything else
// is retried after a pause, on a new connection.
func (j *janitor) failed(ctx context.Context, err error, rows, attempt int) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42501" || pgErr.Code == "42P01" || pgErr.Code == "42703") {
		return fmt.Errorf("retention: delete published rows from %s: %w; fix the privilege or table, or use --retention=none",
			j.table.QualifiedName(), err)
	}
	wait := min(time.Duration(attempt)*200*time.Millisecond, 5*time.Second)
	j.log.Warn().Err(err).Int("rows", rows).Dur("retry_in", wait).Msg("cannot delete published rows; retrying (they stay unconfirmed meanwhile)")
	if j.conn != nil {
		_ = j.conn.Close(ctx)
		j.conn = nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(wait):
		return nil
	}
}

// missing returns the ids that are not in deleted.
func missing(ids, deleted []string) []string {
	gone := make(map[string]bool, len(deleted))
	for _, id := range deleted {
		gone[id] = true
	}
	var rest []string
	for _, id := range ids {
		if !gone[id] {
			rest = append(rest, id)
		}
	}
	return rest
}

// exec deletes the rows and returns the ids it deleted.
func (j *janitor) exec(ctx context.Context, ids []string) ([]string, error) {
	if j.conn == nil {
		conn, err := pgx.Connect(ctx, j.url)
		if err != nil {
			return nil, err
		}
		j.conn = conn
	}
	rows, err := j.conn.Query(ctx, j.sql, ids)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
