package modelserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// DefaultLedger is the table that records each mutation's outcome, unless Mutations.Ledger names
// another; unqualified, it is found (and created) by the connection's search_path, like the
// application's own tables.
const DefaultLedger = "pgoutbox_mutations"

// Mutations applies the application's mutations idempotently: it runs each in one transaction
// with its outbox event and a ledger row holding the mutation id and its outcome, so that a
// replayed request (a retry after a timeout, a page reloaded mid-request) gets the first outcome
// back and writes nothing.
type Mutations struct {
	DB     Beginner // the application's pool
	Outbox Outbox   // where the events go
	Ledger string   // schema.table of the ledger; default DefaultLedger. Create it with Setup.
}

// Mutation is one request of a page: the SDK's optimistic event and who sent it.
type Mutation struct {
	ID   string          `json:"mutationId"` // the page's id for it: 1 to 128 characters
	Name string          `json:"name"`       // the application's name for the change
	Data json.RawMessage `json:"data"`       // its arguments, as the page sent them
	User string          `json:"-"`          // who sent it ([UserFunc]); "" when not known
}

// Change is what the application decided to do with a mutation: the event to publish, or a
// refusal. A refused mutation still publishes an event (rejected, on Channel, with
// {"reason": Reject}), so the page that made it rolls it back from the same stream every page
// reads; the application's writes in a refused mutation are rolled back.
type Change struct {
	Event         // the event of an accepted change (its MutationID and Rejected are set for you)
	Reject string // non-empty: refuse the mutation, with this reason (shown to the user)
}

// MutateFunc is the application's write: it checks m (return an [*Error] such as [BadRequest]
// for a malformed one, nothing is recorded then), writes its rows in tx and returns the event
// that tells pages about it, or a refusal. A mutation that changes nothing must still return an
// event: the SDK confirms a mutation only by its event (or by its xid in a later snapshot).
type MutateFunc func(ctx context.Context, tx pgx.Tx, m Mutation) (Change, error)

// Outcome is the answer to a mutation, the JSON the SDK's commit() returns.
type Outcome struct {
	XID      string `json:"xid"` // the transaction's full id, decimal
	Rejected bool   `json:"rejected,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Replayed bool   `json:"-"` // the outcome of an earlier request with the same id
}

// CheckID reports what is wrong with a mutation id.
func CheckID(id string) error {
	switch {
	case id == "" || len(id) > 128:
		return BadRequest("mutationId: want 1 to 128 characters")
	case !utf8.ValidString(id) || strings.ContainsRune(id, 0):
		return BadRequest("mutationId: want UTF-8 text without NUL characters")
	}
	return nil
}

// Apply runs m: in one transaction it claims m.ID in the ledger, runs mutate, writes the event
// (with the mutation id; rejected when mutate refused it), records the outcome, and commits. If
// the ledger already holds m.ID, Apply writes nothing and returns the recorded outcome
// (Replayed): a request sent twice has one effect and one event. A concurrent duplicate waits
// for the first to commit or roll back. The same id from another user is a 409.
func (ms *Mutations) Apply(ctx context.Context, m Mutation, mutate MutateFunc) (Outcome, error) {
	if err := CheckID(m.ID); err != nil {
		return Outcome{}, err
	}
	if err := ms.Outbox.check(); err != nil {
		return Outcome{}, err
	}
	tx, err := ms.DB.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return Outcome{}, fmt.Errorf("mutation %s: begin: %w", m.ID, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	ledger := ident(or(ms.Ledger, DefaultLedger))
	tag, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (mutation_id, user_id) VALUES ($1, $2) ON CONFLICT (mutation_id) DO NOTHING`, ledger), m.ID, m.User)
	if err != nil {
		return Outcome{}, ms.ledgerError(err)
	}
	if tag.RowsAffected() == 0 {
		return ms.recorded(ctx, tx, m)
	}
	change, err := ms.decide(ctx, tx, m, mutate)
	if err != nil {
		return Outcome{}, err
	}
	ev := change.Event
	ev.MutationID, ev.Rejected = m.ID, change.Reject != ""
	if ev.Rejected {
		ev.Data = map[string]string{"reason": change.Reject}
	}
	out := Outcome{Rejected: ev.Rejected, Reason: change.Reject}
	if out.XID, err = ms.Outbox.Write(ctx, tx, ev); err != nil {
		return Outcome{}, err
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET xid = $2::xid8, rejected = $3, reason = $4 WHERE mutation_id = $1`, ledger),
		m.ID, out.XID, out.Rejected, nullIfEmpty(out.Reason)); err != nil {
		return Outcome{}, fmt.Errorf("mutation %s: record outcome: %w", m.ID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Outcome{}, fmt.Errorf("mutation %s: commit: %w", m.ID, err)
	}
	return out, nil
}

// decide runs mutate inside a savepoint, so that a refusal undoes the application's writes.
func (ms *Mutations) decide(ctx context.Context, tx pgx.Tx, m Mutation, mutate MutateFunc) (Change, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return Change{}, fmt.Errorf("mutation %s: savepoint: %w", m.ID, err)
	}
	defer func() { _ = sp.Rollback(context.WithoutCancel(ctx)) }()
	change, err := mutate(ctx, sp, m)
	if err != nil {
		return Change{}, err
	}
	if change.Reject != "" {
		if change.Channel == "" {
			return Change{}, errors.New("modelserver: a refused mutation needs its Channel: the page that made it learns the refusal there")
		}
		if err := sp.Rollback(ctx); err != nil {
			return Change{}, fmt.Errorf("mutation %s: roll back the refused change: %w", m.ID, err)
		}
		return change, nil
	}
	if err := sp.Commit(ctx); err != nil {
		return Change{}, fmt.Errorf("mutation %s: release savepoint: %w", m.ID, err)
	}
	return change, nil
}

// recorded returns the outcome the ledger holds for m.ID.
func (ms *Mutations) recorded(ctx context.Context, tx pgx.Tx, m Mutation) (Outcome, error) {
	out := Outcome{Replayed: true}
	var user string
	var xid, reason *string
	err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT user_id, xid::text, rejected, reason FROM %s WHERE mutation_id = $1`, ident(or(ms.Ledger, DefaultLedger))), m.ID).
		Scan(&user, &xid, &out.Rejected, &reason)
	if err != nil {
		return out, fmt.Errorf("mutation %s: read recorded outcome: %w", m.ID, err)
	}
	if user != m.User {
		return out, Errorf(http.StatusConflict, "mutationId %s is taken: generate a new id for every mutation", m.ID)
	}
	if xid == nil {
		return out, fmt.Errorf("mutation %s: recorded without an outcome", m.ID)
	}
	out.XID = *xid
	if reason != nil {
		out.Reason = *reason
	}
	return out, nil
}

func (ms *Mutations) ledgerError(err error) error {
	var pg sqlStater
	if errors.As(err, &pg) && (pg.SQLState() == "42P01" || pg.SQLState() == "42703") {
		return fmt.Errorf("mutation ledger %s is missing or old: call Mutations.Setup at start-up, "+
			"or add Mutations.SetupSQL() to the application's migrations: %w", or(ms.Ledger, DefaultLedger), err)
	}
	return fmt.Errorf("mutation ledger %s: %w", or(ms.Ledger, DefaultLedger), err)
}

// SetupSQL returns the statement that creates the ledger if it is missing, for an application
// whose migrations create its tables. [Mutations.Setup] runs it.
func (ms *Mutations) SetupSQL() string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
  mutation_id text PRIMARY KEY,
  user_id     text NOT NULL DEFAULT '',
  xid         xid8,
  rejected    boolean NOT NULL DEFAULT false,
  reason      text,
  created_at  timestamptz NOT NULL DEFAULT now()
)`, ident(or(ms.Ledger, DefaultLedger)))
}

// Setup creates the ledger if it is missing. Safe to call at every start.
func (ms *Mutations) Setup(ctx context.Context) error {
	tx, err := ms.DB.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return fmt.Errorf("create mutation ledger: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, ms.SetupSQL()); err != nil {
		return fmt.Errorf("create mutation ledger %s (the role needs CREATE on its schema): %w", or(ms.Ledger, DefaultLedger), err)
	}
	return tx.Commit(ctx)
}

// Prune deletes the ledger's rows older than age and returns how many. A replay comes within
// seconds or minutes (a retry, a reload); a day is plenty.
func (ms *Mutations) Prune(ctx context.Context, age time.Duration) (int64, error) {
	tx, err := ms.DB.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return 0, fmt.Errorf("prune mutation ledger: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	tag, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE created_at < now() - $1::interval`, ident(or(ms.Ledger, DefaultLedger))),
		fmt.Sprintf("%d microseconds", age.Microseconds()))
	if err != nil {
		return 0, fmt.Errorf("prune mutation ledger: %w", err)
	}
	return tag.RowsAffected(), tx.Commit(ctx)
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
