package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
)

// partitions of every benchmark topic.
const partitions = 3

// outbox is one scenario's private outbox: table, publication, relay slot and topic share one
// name, bench_<label>_<random>; the reference slot, when there is one, is <name>_ref.
type outbox struct {
	b       *bench
	name    string
	refSlot string
}

// newOutbox creates the outbox with `pgoutbox setup --partitions 3` and, with ref, a second
// pgoutput slot for pg_recvlogical, created now: a slot decodes only what is written after it.
// Call drop when done, also after an error: it removes whatever exists.
func (b *bench) newOutbox(ctx context.Context, label string, ref bool) (*outbox, error) {
	var r [4]byte
	_, _ = rand.Read(r[:])
	o := &outbox{b: b, name: "bench_" + label + "_" + hex.EncodeToString(r[:])}
	if ref {
		o.refSlot = o.name + "_ref"
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, b.relayBin, "setup", "--partitions", fmt.Sprint(partitions)) //nolint:gosec // our binary
	cmd.Env = o.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		return o, fmt.Errorf("pgoutbox setup: %w\n%s", err, out)
	}
	if ref {
		if err := o.exec(cctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, o.refSlot); err != nil {
			return o, fmt.Errorf("create reference slot: %w", err)
		}
	}
	return o, nil
}

// env is the relay's configuration for this outbox; metrics and health are off unless a
// scenario adds PGOUTBOX_HTTP_ADDR.
func (o *outbox) env(extra ...string) []string {
	env := append(os.Environ(),
		"PGOUTBOX_DATABASE_URL="+o.b.opts.databaseURL,
		"PGOUTBOX_KAFKA_BROKERS="+o.b.opts.brokers,
		"PGOUTBOX_TABLE="+o.name,
		"PGOUTBOX_SLOT="+o.name,
		"PGOUTBOX_PUBLICATION="+o.name,
		"PGOUTBOX_TOPIC="+o.name,
		"PGOUTBOX_HTTP_ADDR=",
		"PGOUTBOX_LOG_LEVEL="+o.b.opts.logLevel,
	)
	return append(env, extra...)
}

// exec runs one statement on a fresh connection.
func (o *outbox) exec(ctx context.Context, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, o.b.opts.databaseURL)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

// dropSlot drops a slot whatever holds it (a slot left behind pins WAL for ever); a slot
// that does not exist is fine.
func (o *outbox) dropSlot(ctx context.Context, slot string) error {
	for {
		_ = o.exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
			WHERE slot_name = $1 AND active_pid IS NOT NULL`, slot)
		err := o.exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop slot %s: %w", slot, err)
		case <-time.After(100 * time.Millisecond): // a terminated walsender may hold it a moment longer
		}
	}
}

// drop removes the slots, publication, table and topic. It runs on its own context, so that it
// also cleans up after an interrupt.
func (o *outbox) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	for _, slot := range []string{o.name, o.refSlot} {
		if slot != "" {
			errs = append(errs, o.dropSlot(ctx, slot))
		}
	}
	ident := pgx.Identifier{o.name}.Sanitize()
	errs = append(errs,
		o.exec(ctx, "DROP PUBLICATION IF EXISTS "+ident),
		o.exec(ctx, "DROP TABLE IF EXISTS "+ident))
	res, err := o.b.kafkaClient().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{o.name}})
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("delete topic %s: %w", o.name, err))
	case res.Errors[o.name] != nil && !errors.Is(res.Errors[o.name], kafka.UnknownTopicOrPartition):
		errs = append(errs, fmt.Errorf("delete topic %s: %w", o.name, res.Errors[o.name]))
	}
	if err := errors.Join(errs...); err != nil {
		o.b.progress("cleanup of %s incomplete: %v", o.name, err)
		return err
	}
	return nil
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
