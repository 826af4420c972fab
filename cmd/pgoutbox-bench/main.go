// Command pgoutbox-bench measures pgoutbox on this machine against the local services (`make up`)
// and prints throughput, latency and memory side by side, then writes the same figures as JSON:
//
//  1. backlog throughput, 1-row transactions: pgoutbox next to pg_recvlogical (pgoutput, same
//     publication, same backlog), the decode ceiling of one slot;
//  2. the same with 100-row transactions;
//  3. the Kafka ceiling: the same records produced by sink.Publisher alone, no PostgreSQL;
//  4. commit→ack and commit→consumer latency under a steady write rate;
//  5. the relay's peak resident memory (VmHWM) per scenario, and for one 1,000,000-row
//     transaction;
//  6. Go micro-benchmarks of decoding and of the checkpoint ledger;
//  7. the start-up cost of exactly-once: a session's first sends with and without the
//     partitions' tail reads, over 3 and 64 partitions (no PostgreSQL).
//  8. the write side: the application's throughput with pgbench, WAL bytes per event and the
//     table's size, for the table outbox (pgoutbox deleting, or the application deleting in its
//     transaction) and the WAL-only outbox (pgoutbox_send).
//  9. side by side with Debezium: Kafka Connect standalone with Debezium's PostgreSQL connector
//     and its outbox EventRouter, then pgoutbox, on one backlog of 1-row transactions.
//  10. end to end, side by side: from the writer's commit to centrifuge-go subscribers through
//     Centrifugo v6.9.1, for pgoutbox (table and WAL-only), Centrifugo's PostgreSQL stream broker
//     and outbox consumer, Debezium, and a baseline without events.
//
// Each scenario has its own table, publication, slot(s) and topic, named bench_*, dropped at its
// end even on error (a slot left behind pins WAL). `make bench` runs it; `make bench QUICK=1`
// is the smaller run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// options are the command-line flags.
type options struct {
	quick       bool
	rows        int
	channels    int
	writers     int
	rates       string
	latencyFor  time.Duration
	bigRows     int
	only        string
	out         string
	perf        bool
	relayLogs   string
	logLevel    string
	relayEnv    string
	databaseURL string
	brokers     string

	writeClients int           // pgbench clients of scenario 8
	writeFor     time.Duration // pgbench's run per mode of scenario 8
	writeRounds  int           // rounds over the modes of scenario 8

	debeziumRows        int // backlog rows of scenario 9
	debeziumHeartbeatMs int // Debezium's heartbeat.interval.ms in scenario 9 (0: off, Debezium's default)

	e2eRates       string        // scenario 10's rates, events/s
	e2eFor         time.Duration // scenario 10's measured phase per path and rate
	e2eChannels    int           // scenario 10's channels
	e2eSubscribers int           // scenario 10's subscribers, spread evenly over the channels
	e2ePaths       string        // scenario 10's paths (e2ePaths' keys)
}

// bench holds what the scenarios share.
type bench struct {
	opts     options
	root     string // the module's directory
	tmp      string // the relay binary and scratch files
	relayBin string
	began    time.Time
	res      *Results
}

func main() { os.Exit(run()) }

func run() int {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgoutbox-bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	b := &bench{opts: opts, began: time.Now()}
	if err := b.prepare(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "pgoutbox-bench:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(b.tmp) }()
	b.runScenarios(ctx)
	b.res.Seconds = time.Since(b.began).Seconds()
	b.res.evaluate()
	printReport(os.Stdout, b.res)
	if err := writeJSON(opts.out, b.res); err != nil {
		fmt.Fprintln(os.Stderr, "pgoutbox-bench: write results:", err)
		return 1
	}
	fmt.Printf("\nJSON: %s\n", opts.out)
	if len(b.res.Errors) > 0 || ctx.Err() != nil {
		return 1
	}
	return 0
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("pgoutbox-bench", flag.ContinueOnError)
	fs.BoolVar(&o.quick, "quick", false, "smaller run (50,000 backlog rows, 15 s per latency rate), under 5 minutes")
	fs.IntVar(&o.rows, "rows", 0, "backlog rows of scenarios 1-3 (default 500,000; 50,000 with --quick)")
	fs.IntVar(&o.channels, "channels", 1000, "distinct channels (Kafka keys)")
	fs.IntVar(&o.writers, "writers", 4, "parallel connections writing the 1-row backlog")
	fs.StringVar(&o.rates, "rates", "1000,3000,5000", "write rates of the latency scenario, rows/s, comma-separated")
	fs.DurationVar(&o.latencyFor, "latency-for", 0, "duration of each latency rate (default 60s; 15s with --quick)")
	fs.IntVar(&o.bigRows, "big-rows", 1_000_000, "rows of the one large transaction of the memory scenario")
	fs.StringVar(&o.only, "only", "1,2,3,4,5,6,7,9,10", "scenarios to run, comma-separated")
	fs.IntVar(&o.writeClients, "write-clients", 64, "pgbench clients of the write-side scenario 8")
	fs.IntVar(&o.writeRounds, "write-rounds", 2, "rounds over the modes of scenario 8, interleaved (the best tps per mode is printed)")
	fs.DurationVar(&o.writeFor, "write-for", 0, "pgbench's run per mode of scenario 8 (default 30s; 10s with --quick)")
	fs.IntVar(&o.debeziumRows, "debezium-rows", 0, "backlog rows of the side-by-side scenario 9 (default 100,000; 20,000 with --quick)")
	fs.IntVar(&o.debeziumHeartbeatMs, "debezium-heartbeat-ms", debeziumHeartbeatMs, "Debezium's heartbeat.interval.ms in scenario 9 (0 turns heartbeats off, Debezium's default: its slot then stays behind)")
	fs.StringVar(&o.e2eRates, "e2e-rates", "", "event rates of the end-to-end scenario 10, events/s, comma-separated (default 100,1000,3000; 1000 with --quick)")
	fs.DurationVar(&o.e2eFor, "e2e-for", 0, "measured phase of scenario 10 per path and rate (default 30s; 10s with --quick)")
	fs.IntVar(&o.e2eChannels, "e2e-channels", 100, "channels of scenario 10")
	fs.IntVar(&o.e2eSubscribers, "e2e-subscribers", 200, "centrifuge-go subscribers of scenario 10, spread evenly over the channels")
	fs.StringVar(&o.e2ePaths, "e2e-paths", "table,send,stream,cfoutbox,debezium,baseline", "paths of scenario 10, comma-separated")
	fs.StringVar(&o.out, "out", "", "JSON results file (default $PGOUTBOX_STATE_DIR/bench/bench-<time>.json)")
	fs.StringVar(&o.relayLogs, "relay-logs", "", "directory to keep each relay's log in, as <outbox>.log (default: not kept)")
	fs.StringVar(&o.logLevel, "relay-log-level", "info", "the relays' --log-level (debug logs every Kafka round)")
	fs.StringVar(&o.relayEnv, "relay-env", "", "extra environment of every relay, comma-separated KEY=value (e.g. GOMAXPROCS=2, against the relay's default of one)")
	fs.BoolVar(&o.perf, "perf", false, "record a CPU profile of the relay in scenario 1 with perf (needs perf and root)")
	fs.StringVar(&o.databaseURL, "database-url", harness.Getenv("PGOUTBOX_BENCH_DATABASE_URL", "postgres://pgoutbox:pgoutbox@127.0.0.1:"+harness.Getenv("PGOUTBOX_PG_PORT", "55432")+"/pgoutbox"), "PostgreSQL URL")
	fs.StringVar(&o.brokers, "kafka-brokers", harness.Getenv("PGOUTBOX_BENCH_KAFKA_BROKERS", "127.0.0.1:"+harness.Getenv("PGOUTBOX_KAFKA_PORT", "59092")), "Kafka brokers")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.rows == 0 {
		o.rows = map[bool]int{false: 500_000, true: 50_000}[o.quick]
	}
	if o.latencyFor == 0 {
		o.latencyFor = map[bool]time.Duration{false: time.Minute, true: 15 * time.Second}[o.quick]
	}
	if o.writeFor == 0 {
		o.writeFor = map[bool]time.Duration{false: 30 * time.Second, true: 10 * time.Second}[o.quick]
	}
	if o.debeziumRows == 0 {
		o.debeziumRows = map[bool]int{false: 100_000, true: 20_000}[o.quick]
	}
	if o.e2eRates == "" {
		o.e2eRates = map[bool]string{false: "100,1000,3000", true: "1000"}[o.quick]
	}
	if o.e2eFor == 0 {
		o.e2eFor = map[bool]time.Duration{false: 30 * time.Second, true: 10 * time.Second}[o.quick]
	}
	if _, err := o.e2eRateList(); err != nil {
		return o, err
	}
	if o.e2eChannels < 1 || o.e2eSubscribers < o.e2eChannels || o.e2eFor < time.Second {
		return o, fmt.Errorf("--e2e-channels %d, --e2e-subscribers %d, --e2e-for %s: want at least 1 channel, a subscriber per channel and 1s",
			o.e2eChannels, o.e2eSubscribers, o.e2eFor)
	}
	if o.debeziumRows < 1 || o.debeziumHeartbeatMs < 0 {
		return o, fmt.Errorf("--debezium-rows %d, --debezium-heartbeat-ms %d: want at least 1 row and a heartbeat ≥ 0", o.debeziumRows, o.debeziumHeartbeatMs)
	}
	if o.writeClients < 1 || o.writeFor < time.Second || o.writeRounds < 1 {
		return o, fmt.Errorf("--write-clients %d, --write-for %s, --write-rounds %d: want at least 1 client, 1s and 1 round",
			o.writeClients, o.writeFor, o.writeRounds)
	}
	if o.out == "" {
		state := harness.Getenv("PGOUTBOX_STATE_DIR", filepath.Join(os.Getenv("HOME"), ".cache", "pgoutbox"))
		o.out = filepath.Join(state, "bench", "bench-"+time.Now().UTC().Format("20060102-150405")+".json")
	}
	if _, err := o.rateList(); err != nil {
		return o, err
	}
	for _, kv := range strings.Split(o.relayEnv, ",") {
		if k, _, ok := strings.Cut(kv, "="); o.relayEnv != "" && (!ok || k == "") {
			return o, fmt.Errorf("--relay-env %q: want KEY=value pairs, comma-separated", o.relayEnv)
		}
	}
	if o.rows < 100 || o.rows%100 != 0 {
		return o, fmt.Errorf("--rows %d: want a multiple of 100, at least 100", o.rows)
	}
	return o, nil
}

func (o options) rateList() ([]int, error) { return parseRates("--rates", o.rates) }

// parseRates reads a flag's comma-separated list of positive rates.
func parseRates(flag, list string) ([]int, error) {
	var rates []int
	for _, s := range strings.Split(list, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || r <= 0 {
			return nil, fmt.Errorf("%s %q: want positive integers, comma-separated", flag, list)
		}
		rates = append(rates, r)
	}
	return rates, nil
}

func (o options) runs(scenario int) bool {
	for _, s := range strings.Split(o.only, ",") {
		if strings.TrimSpace(s) == strconv.Itoa(scenario) {
			return true
		}
	}
	return false
}

// prepare checks the services, describes the machine and builds the relay.
func (b *bench) prepare(ctx context.Context) error {
	root, err := harness.FindRepoRoot()
	if err != nil {
		return err
	}
	b.root = root
	if err := b.checkServices(ctx); err != nil {
		return err
	}
	b.tmp, err = os.MkdirTemp("", "pgoutbox-bench-")
	if err != nil {
		return err
	}
	b.progress("building the relay (go build ./cmd/pgoutbox, no -race)")
	if err := b.buildRelay(ctx); err != nil {
		_ = os.RemoveAll(b.tmp)
		return err
	}
	mode := "full"
	if b.opts.quick {
		mode = "quick"
	}
	b.res = &Results{
		StartedAt: b.began.UTC(),
		Command:   "make bench" + map[bool]string{false: "", true: " QUICK=1"}[b.opts.quick],
		Args:      os.Args[1:],
		Mode:      mode,
		Rows:      b.opts.rows,
		Channels:  b.opts.channels,
		Machine:   b.describeMachine(ctx),
	}
	b.progress("machine: %s", b.res.Machine)
	if left := b.leftovers(ctx); len(left) > 0 {
		b.progress("warning: bench_* slots exist already, from a benchmark killed before its cleanup or one running now; "+
			"a forgotten one pins WAL: SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name IN (%s) AND NOT active",
			quoteList(left))
	}
	if len(b.res.Machine.OtherSlots) > 0 {
		b.progress("other replication slots on this cluster (their walsenders share the CPU): %s",
			strings.Join(b.res.Machine.OtherSlots, ", "))
	}
	return nil
}

// step is one scenario, or one rate of the latency scenario.
type step struct {
	scenario int
	name     string
	do       func(context.Context) error
}

// runScenarios runs the selected scenarios; a failed one is recorded and the others still run.
func (b *bench) runScenarios(ctx context.Context) {
	steps := []step{
		{1, "backlog, 1-row transactions", func(ctx context.Context) error { return b.backlogScenario(ctx, 1, 1) }},
		{2, "backlog, 100-row transactions", func(ctx context.Context) error { return b.backlogScenario(ctx, 2, 100) }},
		{3, "Kafka ceiling", b.ceilingScenario},
	}
	rates, _ := b.opts.rateList()
	for _, r := range rates {
		steps = append(steps, step{4, fmt.Sprintf("latency at %d rows/s", r), func(ctx context.Context) error { return b.latencyScenario(ctx, r) }})
	}
	steps = append(steps, step{5, "one large transaction", b.bigTxnScenario}, step{6, "micro-benchmarks", b.microScenario},
		step{7, "exactly-once start-up: partition tail reads", b.tailReadScenario},
		step{8, "write side: table outbox vs WAL-only", b.writeSideScenario},
		step{debeziumScenario, "side by side with Debezium", b.sideBySideScenario},
		step{e2eScenario, "end to end, side by side: commit → subscriber", b.endToEndScenario})
	for _, s := range steps {
		if !b.opts.runs(s.scenario) || ctx.Err() != nil {
			continue
		}
		b.progress("scenario %d: %s", s.scenario, s.name)
		if err := s.do(ctx); err != nil {
			msg := fmt.Sprintf("scenario %d (%s): %v", s.scenario, s.name, err)
			b.progress("FAILED: %s", msg)
			b.res.Errors = append(b.res.Errors, msg)
		}
	}
}

// progress prints a line to stderr with the time since the start.
func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(b.began).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) brokers() []string { return strings.Split(b.opts.brokers, ",") }
