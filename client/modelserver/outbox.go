package modelserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Outbox says where events are written: an outbox table (the relay's --table, with its
// --mutation-id-column and --rejected-column), or the WAL-only outbox function pgoutbox_send
// that `pgoutbox setup --events-from=messages|both` installs. Set Table or Send, not both.
type Outbox struct {
	Table            string // schema.table, e.g. public.outbox; its columns channel, name, data, headers
	MutationIDColumn string // default mutation_id (the relay's --mutation-id-column)
	RejectedColumn   string // default rejected (the relay's --rejected-column)
	Send             string // schema.function, e.g. public.pgoutbox_send
}

// Event is one outbox event.
type Event struct {
	Channel    string            // the Centrifugo channel, e.g. outbox:todos-42; non-empty, no comma
	Name       string            // the event's name, e.g. todo.added
	Data       any               // the payload, marshalled to JSON (json.RawMessage as it is)
	Headers    map[string]string // extra headers (optional); names must not start with pgoutbox-
	MutationID string            // the mutation it settles (optional)
	Rejected   bool              // the mutation was refused: the SDK rolls it back, merge never sees it
}

func (o Outbox) check() error {
	if (o.Table == "") == (o.Send == "") {
		return errors.New("modelserver: Outbox: set Table (the outbox table) or Send (pgoutbox_send), not both")
	}
	return nil
}

// Write writes e in the application's transaction tx and returns the transaction's full id
// (pg_current_xact_id() as a decimal string, the numbering of pg_current_snapshot()): the xid a
// mutation's answer carries, with which the SDK settles it from a later snapshot.
func (o Outbox) Write(ctx context.Context, tx pgx.Tx, e Event) (xid string, err error) {
	if err := o.check(); err != nil {
		return "", err
	}
	if e.Channel == "" || strings.ContainsRune(e.Channel, ',') {
		return "", fmt.Errorf("modelserver: event channel %q: want one non-empty channel without a comma", e.Channel)
	}
	data, err := json.Marshal(e.Data)
	if err != nil {
		return "", BadRequest("event data is not JSON: " + err.Error())
	}
	var headers, mutationID, rejected any
	if len(e.Headers) > 0 {
		headers = e.Headers
	}
	if e.MutationID != "" {
		mutationID = e.MutationID
	}
	if e.Rejected {
		rejected = true
	}
	var q string
	if o.Send != "" {
		q = fmt.Sprintf(`SELECT pg_current_xact_id()::text FROM %s($1, $2, $3::jsonb, $4::jsonb, $5, $6)`, ident(o.Send))
	} else {
		q = fmt.Sprintf(`INSERT INTO %s (channel, name, data, headers, %s, %s) VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, $6)
			RETURNING pg_current_xact_id()::text`, ident(o.Table), pgx.Identifier{or(o.MutationIDColumn, "mutation_id")}.Sanitize(),
			pgx.Identifier{or(o.RejectedColumn, "rejected")}.Sanitize())
	}
	if err := tx.QueryRow(ctx, q, e.Channel, e.Name, string(data), headers, mutationID, rejected).Scan(&xid); err != nil {
		return "", fmt.Errorf("write outbox event to %s: %w", or(o.Table, o.Send), err)
	}
	return xid, nil
}

// ident quotes a name that may be schema-qualified ("public.outbox").
func ident(name string) string {
	return pgx.Identifier(strings.SplitN(name, ".", 2)).Sanitize()
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}
