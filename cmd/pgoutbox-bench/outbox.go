package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// partitions of every benchmark topic.
const partitions = 3

// outbox is one scenario's private outbox (harness.Outbox): table, publication, relay slot
// and topic share one name, bench_<label>_<random>; the reference slot, when there is one, is
// <name>_ref.
type outbox struct {
	harness.Outbox
	b       *bench
	refSlot string
	own     []string // configuration that keeps other processes' events out (tableOnly)
}

// tableOnly keeps an outbox of table rows to its own rows. Every relay that reads messages
// (--events-from=both, the default) publishes every pgoutbox_send() message of the database
// with its prefix, whoever sent it: with the default prefix, a benchmark relay published
// another process's WAL-only events into its topic (50,033 records for 50,000 rows while other
// tests ran). Only the table's inserts become events, and a prefix of the outbox's own name
// keeps a stray message from being a bad row; setup then installs no functions (it would
// replace the public schema's pgoutbox_send, shared with whoever else uses it).
func (o *outbox) tableOnly() []string {
	return []string{"PGOUTBOX_EVENTS_FROM=table", "PGOUTBOX_MESSAGE_PREFIX=" + o.Name}
}

// newOutbox creates the outbox with `pgoutbox setup --partitions 3` and, with ref, a second
// pgoutput slot for pg_recvlogical, created now: a slot decodes only what is written after it.
// Call drop when done, also after an error: it removes whatever exists.
func (b *bench) newOutbox(ctx context.Context, label string, ref bool) (*outbox, error) {
	o, err := b.newOutboxNamed(label)
	if err != nil {
		return o, err
	}
	if ref {
		o.refSlot = o.Name + "_ref"
	}
	o.own = o.tableOnly()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := o.setup(cctx); err != nil {
		return o, err
	}
	if ref {
		if err := o.exec(cctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, o.refSlot); err != nil {
			return o, fmt.Errorf("create reference slot: %w", err)
		}
	}
	return o, nil
}

// newOutboxNamed returns an outbox with a fresh name and nothing created yet.
func (b *bench) newOutboxNamed(label string) (*outbox, error) {
	var r [4]byte
	_, err := rand.Read(r[:])
	return &outbox{b: b, Outbox: harness.Outbox{
		Services: harness.Services{DatabaseURL: b.opts.databaseURL, Brokers: b.brokers()},
		Name:     fmt.Sprintf("bench_%s_%x", label, r),
	}}, err
}

// setup runs `pgoutbox setup --partitions 3` with the outbox's configuration and extraEnv.
func (o *outbox) setup(ctx context.Context, extraEnv ...string) error {
	if out, err := o.Command(ctx, o.b.relayBin, o.env(extraEnv...), "setup", "--partitions", fmt.Sprint(partitions)); err != nil {
		return fmt.Errorf("pgoutbox setup: %w\n%s", err, out)
	}
	return nil
}

// env is the relay's configuration for this outbox at the benchmark's log level; metrics and
// health are off unless a scenario adds PGOUTBOX_HTTP_ADDR.
func (o *outbox) env(extra ...string) []string {
	env := append(o.Env(), "PGOUTBOX_LOG_LEVEL="+o.b.opts.logLevel)
	return append(append(env, o.own...), extra...)
}

// exec runs one statement on a fresh connection.
func (o *outbox) exec(ctx context.Context, sql string, args ...any) error {
	return harness.Exec(ctx, o.DatabaseURL, sql, args...)
}

// dropSlot drops a slot whatever holds it (a slot left behind pins WAL for ever); a slot
// that does not exist is fine.
func (o *outbox) dropSlot(ctx context.Context, slot string) error {
	return harness.DropSlot(ctx, o.DatabaseURL, slot)
}

// drop removes the slots, publication, table and topic. It runs on its own context, so that it
// also cleans up after an interrupt.
func (o *outbox) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := o.Drop(ctx)
	if o.refSlot != "" {
		err = errors.Join(err, o.dropSlot(ctx, o.refSlot))
	}
	if err != nil {
		o.b.progress("cleanup of %s incomplete: %v", o.Name, err)
	}
	return err
}

// withOutbox runs f on a new outbox and drops the outbox afterwards, whatever happened.
func (b *bench) withOutbox(ctx context.Context, label string, ref bool, f func(*outbox) error) error {
	o, err := b.newOutbox(ctx, label, ref)
	defer func() { _ = o.drop() }()
	if err != nil {
		return err
	}
	return f(o)
}

// leftovers lists bench_* slots already on the cluster: from a benchmark that was killed
// before its cleanup (they pin WAL: drop them), or from one running right now.
func (b *bench) leftovers(ctx context.Context) []string {
	conn, err := pgx.Connect(ctx, b.opts.databaseURL)
	if err != nil {
		return nil
	}
	defer func() { _ = conn.Close(context.Background()) }()
	rows, err := conn.Query(ctx, `SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'bench\_%' ORDER BY 1`)
	if err != nil {
		return nil
	}
	names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	return names
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "'" + n + "'"
	}
	return strings.Join(q, ", ")
}
