package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// WriteSideResult is scenario 8 for one way of writing events: what the application pays.
type WriteSideResult struct {
	Mode         string  `json:"mode"`
	Round        int     `json:"round"`
	Clients      int     `json:"pgbench_clients"`
	Seconds      float64 `json:"seconds"`
	Transactions int     `json:"transactions"` // = events: one per transaction
	TPS          float64 `json:"tps"`          // pgbench's, without connection time
	LatencyMs    float64 `json:"latency_average_ms"`
	// AppWALBytes is the WAL written while pgbench ran (the relay stopped); WALBytes from
	// pgbench's start until the relay confirmed every event, so with the janitor's deletes
	// (delete-after-publish). Both are the whole cluster's: autovacuum's and any other
	// session's WAL count too.
	AppWALBytes         int64   `json:"app_wal_bytes"`
	AppWALBytesPerEvent float64 `json:"app_wal_bytes_per_event"`
	WALBytes            int64   `json:"wal_bytes"`
	WALBytesPerEvent    float64 `json:"wal_bytes_per_event"`
	// TableBytes is pg_total_relation_size of the outbox table (heap, indexes, TOAST) once the
	// relay confirmed every event: what vacuum still has to reclaim, or the rows still there.
	TableBytes int64 `json:"table_bytes"`
	// Drain is how long a relay started after pgbench took until the slot's confirmation
	// passed the last commit (with delete-after-publish: every row deleted).
	Drain   float64 `json:"relay_drain_seconds"`
	Records int64   `json:"kafka_records"`
}

// writeMode is one way of writing an event in the application's transaction.
type writeMode struct {
	name  string
	label string   // of the outbox's name
	env   []string // the relay's extra settings
	// event is the event's statement(s) in the pgbench script, after the business UPDATE; %[1]s
	// is the schema, %[2]s the payload expression. Empty: the baseline, no event.
	event string
	// delivered: the relay publishes the events (the baseline and the bare message have none).
	delivered bool
	// prepare creates what the event statement needs in the schema; searchPath runs pgbench with
	// the schema first in its search_path (for functions that name their tables unqualified).
	prepare    func(ctx context.Context, b *bench, schema string) error
	searchPath bool
}

// The modes of scenario 8; writeModes[0] is the baseline the others are compared with, and
// (c) is compared with (d) too: the same message without the function around it.
var writeModes = []writeMode{
	{"(0) no event: the business UPDATE alone", "w0", nil, "", false, nil, false},
	{"(a) table, --retention=delete-after-publish", "wa", []string{"PGOUTBOX_RETENTION=delete-after-publish"},
		"INSERT INTO %[1]s.outbox (channel, name, data) VALUES ('ch-' || :ch, 'bench.event', %[2]s);\n", true, nil, false},
	{"(b) table, the application deletes in its transaction", "wb", nil,
		"INSERT INTO %[1]s.outbox (channel, name, data) VALUES ('ch-' || :ch, 'bench.event', %[2]s);\n" +
			"DELETE FROM %[1]s.outbox WHERE sequence_id = lastval();\n", true, nil, false},
	{"(c) WAL-only, pgoutbox_send()", "wc", nil,
		"SELECT %[1]s.pgoutbox_send('ch-' || :ch, 'bench.event', %[2]s);\n", true, nil, false},
	{"(d) a bare pg_logical_emit_message of the payload", "wd", nil,
		"SELECT pg_logical_emit_message(true, '%[1]s_bare', (%[2]s)::text);\n", false, nil, false},
	{"(e) Centrifugo's stream broker, cf_stream_publish()", "we", nil,
		"SELECT * FROM cf_stream_publish('ch-' || :ch, %[2]s, p_history_size => 1000, p_history_ttl => interval '24 hours');\n", false,
		func(ctx context.Context, b *bench, schema string) error { return b.createStreamBroker(ctx, schema) }, true},
	{"(f) Centrifugo's outbox table (its consumer stopped)", "wf", nil,
		"INSERT INTO %[1]s.centrifugo_outbox (method, payload) VALUES ('publish', jsonb_build_object('channel', 'ch-' || :ch, 'data', %[2]s));\n", false,
		func(ctx context.Context, b *bench, schema string) error {
			_, _, ddl := cfOutboxDDL(schema)
			return b.exec(ctx, ddl)
		}, false},
}

// businessRows is the size of the table the business UPDATE writes to: with 64 writers, two of
// them seldom want the same row.
const businessRows = 10_000

// script is the mode's pgbench script: one transaction with a business UPDATE and the event.
func (m writeMode) script(schema string) string {
	return fmt.Sprintf("\\set ch random(0, 999)\n\\set id random(1, %d)\nBEGIN;\n"+
		"UPDATE %s.business SET n = n + 1 WHERE id = :id;\n", businessRows, schema) + m.eventSQL(schema) + "COMMIT;\n"
}

// eventSQL is the mode's event statement(s) for the schema.
func (m writeMode) eventSQL(schema string) string {
	if m.event == "" {
		return ""
	}
	return fmt.Sprintf(m.event, schema, writePayload)
}

// writePayload is the payload of every event: about 200 bytes of JSON, as in the other scenarios.
var writePayload = fmt.Sprintf(`jsonb_build_object('channel', 'ch-' || :ch, 'kind', 'bench.event', 'body', repeat('x', %d))`, payloadFill)

// writeSideScenario measures the application's side for each writeMode: pgbench clients
// committing one event per transaction (synchronous_commit = on) with the relay stopped, then
// a relay draining what they wrote.
func (b *bench) writeSideScenario(ctx context.Context) error {
	pgbench, err := pgBin("pgbench")
	if err != nil {
		return err
	}
	var errs []error
	for round := 1; round <= b.opts.writeRounds; round++ { // interleaved: load changes hit every mode
		for _, m := range writeModes {
			if ctx.Err() != nil {
				break
			}
			b.progress("scenario 8, round %d: %s, %d clients for %s", round, m.name, b.opts.writeClients, b.opts.writeFor)
			r, err := b.writeSide(ctx, pgbench, m)
			r.Round = round
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", m.name, err))
				continue
			}
			b.res.WriteSide = append(b.res.WriteSide, r)
		}
	}
	return errors.Join(errs...)
}

func (b *bench) writeSide(ctx context.Context, pgbench string, m writeMode) (WriteSideResult, error) {
	r := WriteSideResult{Mode: m.name, Clients: b.opts.writeClients, Seconds: b.opts.writeFor.Seconds()}
	o, err := b.newSchemaOutbox(ctx, m.label)
	defer func() { _ = o.dropSchema() }()
	if err != nil {
		return r, err
	}
	business := pgx.Identifier{o.Name, "business"}.Sanitize()
	if err := o.exec(ctx, fmt.Sprintf("CREATE TABLE %[1]s (id int PRIMARY KEY, n bigint NOT NULL, note text);\n"+
		"INSERT INTO %[1]s SELECT g, 0, repeat('b', 60) FROM generate_series(1, %[2]d) g", business, businessRows)); err != nil {
		return r, err
	}
	if err := o.exec(ctx, "VACUUM ANALYZE "+business); err != nil {
		return r, err
	}
	if m.prepare != nil {
		if err := m.prepare(ctx, b, o.Name); err != nil {
			return r, err
		}
	}
	options := "-c synchronous_commit=on"
	if m.searchPath {
		options += " -c search_path=" + o.Name + ",public"
	}
	script := filepath.Join(b.tmp, o.Name+".sql")
	if err := os.WriteFile(script, []byte(m.script(o.Name)), 0o600); err != nil {
		return r, err
	}
	// The application alone first: on a small machine a relay streaming meanwhile takes CPU
	// from pgbench, the more so the better it keeps up, which would measure the relay.
	start, err := b.walLSN(ctx)
	if err != nil {
		return r, err
	}
	out, err := b.runPgbench(ctx, pgbench, script, options)
	if err != nil {
		return r, err
	}
	end, err := b.walLSN(ctx)
	if err != nil {
		return r, err
	}
	if err := parsePgbench(out, &r); err != nil {
		return r, err
	}
	r.AppWALBytes = int64(end - start)
	n := float64(max(r.Transactions, 1))
	r.AppWALBytesPerEvent = float64(r.AppWALBytes) / n
	if !m.delivered {
		return r, nil
	}

	relay, err := b.startRelay(o, append(o.schemaEnv(), m.env...)...)
	if err != nil {
		return r, err
	}
	defer func() { _ = relay.stop() }()
	d, err := b.drain(ctx, relay, o.Name, r.Transactions, end, 10*time.Minute, m.label == "wc")
	if err != nil {
		return r, fmt.Errorf("relay: %w", err)
	}
	r.Drain = d.confirmed.Seconds()
	drained, err := b.walLSN(ctx)
	if err != nil {
		return r, err
	}
	r.WALBytes = int64(drained - start)
	r.WALBytesPerEvent = float64(r.WALBytes) / n
	if r.Records, err = harness.CountRecords(ctx, b.kafkaClient(), o.Name, partitions); err != nil {
		return r, err
	}
	r.TableBytes, err = o.tableBytes(ctx)
	return r, err
}

// runPgbench runs the script with the configured clients for the configured time and the
// sessions' options (PGOPTIONS), and returns pgbench's report.
func (b *bench) runPgbench(ctx context.Context, pgbench, script, options string) (string, error) {
	cmd := exec.CommandContext(ctx, pgbench, "-n", "-M", "prepared", "-c", strconv.Itoa(b.opts.writeClients), //nolint:gosec // our arguments
		"-j", strconv.Itoa(min(b.opts.writeClients, 4)), "-T", strconv.Itoa(int(b.opts.writeFor.Seconds())), "-f", script, b.opts.databaseURL)
	cmd.Env = append(os.Environ(), "PGOPTIONS="+options)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("pgbench: %w\n%s", err, out)
	}
	return string(out), nil
}

var (
	pgbenchTxns    = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	pgbenchTPS     = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	pgbenchLatency = regexp.MustCompile(`latency average = ([0-9.]+) ms`)
	pgbenchFailed  = regexp.MustCompile(`number of failed transactions: (\d+)`)
)

// parsePgbench reads the transactions, tps and average latency from pgbench's report.
func parsePgbench(out string, r *WriteSideResult) error {
	find := func(re *regexp.Regexp) (string, error) {
		m := re.FindStringSubmatch(out)
		if m == nil {
			return "", fmt.Errorf("pgbench's report lacks %q:\n%s", re, out)
		}
		return m[1], nil
	}
	var err error
	var s string
	if s, err = find(pgbenchTxns); err == nil {
		r.Transactions, err = strconv.Atoi(s)
	}
	if err == nil {
		if s, err = find(pgbenchTPS); err == nil {
			r.TPS, err = strconv.ParseFloat(s, 64)
		}
	}
	if err == nil {
		if s, err = find(pgbenchLatency); err == nil {
			r.LatencyMs, err = strconv.ParseFloat(s, 64)
		}
	}
	if m := pgbenchFailed.FindStringSubmatch(out); m != nil && m[1] != "0" {
		return fmt.Errorf("pgbench: %s transactions failed:\n%s", m[1], out)
	}
	return err
}

// newSchemaOutbox is newOutbox with the table in a schema of its own, <name>.outbox, and the
// message prefix <name>: the WAL-only outbox's functions live in the table's schema under fixed
// names, and every relay with --events-from=both publishes the messages with its prefix.
func (b *bench) newSchemaOutbox(ctx context.Context, label string) (*outbox, error) {
	o, err := b.newOutboxNamed(label)
	if err != nil {
		return o, err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := o.exec(cctx, "CREATE SCHEMA "+pgx.Identifier{o.Name}.Sanitize()); err != nil {
		return o, err
	}
	return o, o.setup(cctx, o.schemaEnv()...)
}

func (o *outbox) schemaEnv() []string {
	return []string{"PGOUTBOX_TABLE=" + o.Name + ".outbox", "PGOUTBOX_MESSAGE_PREFIX=" + o.Name}
}

// dropSchema is drop, then the schema with the table and the functions.
func (o *outbox) dropSchema() error {
	err := o.drop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return errors.Join(err, o.exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{o.Name}.Sanitize()+" CASCADE"))
}

// tableBytes is pg_total_relation_size of the outbox table.
func (o *outbox) tableBytes(ctx context.Context) (int64, error) {
	conn, err := pgx.Connect(ctx, o.DatabaseURL)
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var n int64
	err = conn.QueryRow(ctx, `SELECT pg_total_relation_size(to_regclass($1))`, pgx.Identifier{o.Name, "outbox"}.Sanitize()).Scan(&n)
	return n, err
}

// bestWriteSide returns, per mode in writeModes order, the round with the highest tps (the
// least disturbed by other load on the machine) and the lowest and highest tps of all rounds.
func bestWriteSide(all []WriteSideResult) (best []WriteSideResult, lo, hi []float64) {
	for _, m := range writeModes {
		var b *WriteSideResult
		l, h := 0.0, 0.0
		for i := range all {
			w := &all[i]
			if w.Mode != m.name {
				continue
			}
			if b == nil || w.TPS > b.TPS {
				b = w
			}
			if l == 0 || w.TPS < l {
				l = w.TPS
			}
			h = max(h, w.TPS)
		}
		if b != nil {
			best, lo, hi = append(best, *b), append(lo, l), append(hi, h)
		}
	}
	return best, lo, hi
}

// printWriteSide prints scenario 8 with the ratios to the baseline (0), and (c) next to (d).
func printWriteSide(p, row func(string, ...any), flush func(), r *Results) {
	best, lo, hi := bestWriteSide(r.WriteSide)
	if len(best) == 0 {
		return
	}
	p("\nWrite side: pgbench, a business UPDATE + 1 event per transaction, synchronous_commit = on, the relay stopped; then a relay drains it")
	p("  (per mode the round with the highest tps; the tps range covers every round)")
	row("mode\tclients\ttransactions\ttps\ttps range\tlatency ms\tadded ms\tapp WAL B/txn\tWAL B/txn with relay\ttable kB after\tdrain s\ttps × (0)\t")
	base := best[0]
	byLabel := map[string]WriteSideResult{}
	for i, w := range best {
		byLabel[w.Mode[:3]] = w
		row("%s\t%d\t%d\t%.0f\t%.0f–%.0f\t%.2f\t%+.2f\t%.0f\t%.0f\t%d\t%.1f\t%.2f\t", w.Mode, w.Clients, w.Transactions, w.TPS, lo[i], hi[i], w.LatencyMs,
			w.LatencyMs-base.LatencyMs, w.AppWALBytesPerEvent, w.WALBytesPerEvent, w.TableBytes/1024, w.Drain, w.TPS/base.TPS)
	}
	flush()
	if c, d := byLabel["(c)"], byLabel["(d)"]; c.TPS > 0 && d.TPS > 0 {
		p("  pgoutbox_send() / the bare message: %.2f× the tps (%.0f%% slower), %+.2f ms latency; (a) / (c): %.2f× the tps",
			c.TPS/d.TPS, 100*(1-c.TPS/d.TPS), c.LatencyMs-d.LatencyMs, byLabel["(a)"].TPS/c.TPS)
	}
	if c, e := byLabel["(c)"], byLabel["(e)"]; c.TPS > 0 && e.TPS > 0 {
		p("  pgoutbox_send() / Centrifugo's stream broker: %.2f× the tps; (a) / (e): %.2f×; Centrifugo's outbox table (f) / (e): %.2f×",
			c.TPS/e.TPS, byLabel["(a)"].TPS/e.TPS, byLabel["(f)"].TPS/e.TPS)
	}
	p("  added ms: pgbench's average latency minus (0)'s; pgbench reports no percentiles without a per-transaction log.")
	p("  WAL: the whole cluster's (autovacuum and other sessions too); \"with relay\" runs until the relay confirmed every event, so it holds (a)'s deletes.")
	p("  table: pg_total_relation_size once every event was confirmed: dead tuples until vacuum reclaims them; (c) and (d) write no table.")
	p("  (d) is not an event the relay reads (another prefix, no channel): the cost of the message alone, for (c) to be compared with.")
	p("  (e), (f): Centrifugo's PostgreSQL paths as scenario 10 configures them, Centrifugo stopped while pgbench runs (as the relay is); nothing drains them here.")
	p("  on a cluster with fsync = off the commits cost no disk flush, so tps compares CPU per transaction; with fsync the flush narrows the gaps.")
}
