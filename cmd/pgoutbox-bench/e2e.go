package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// Scenario 10 follows a commit to a screen, side by side: the same writers' transaction (a
// business UPDATE + one event), the same centrifuge-go subscribers on the same channels, the same
// Centrifugo v6.9.1 binary (a private instance per path), for each of e2ePaths.
const e2eScenario = 10

// EndToEndResult is scenario 10 for one path at one rate.
type EndToEndResult struct {
	Path         string  `json:"path"`
	Key          string  `json:"key"`
	Config       string  `json:"config"`
	Rate         int     `json:"rate_target_events_per_second"`
	RateAchieved float64 `json:"rate_achieved_events_per_second"`
	Seconds      float64 `json:"seconds"`
	Events       int64   `json:"events"` // committed in the measured phase
	Channels     int     `json:"channels"`
	Subscribers  int     `json:"subscribers"`
	// Commit is the writer's transaction, from sending it to its commit's answer.
	Commit Quantiles `json:"commit"`
	// Ack is commit → Kafka's acknowledgement, the relay's histogram over the measured phase
	// (pgoutbox paths only): what of Delivery is spent before Centrifugo's consumer.
	Ack Quantiles `json:"commit_to_kafka_ack,omitempty"`
	// Delivery is commit → a subscriber's receipt: clock_timestamp() in the payload against the
	// subscriber's clock (one machine, one clock), every delivery of the measured phase.
	Delivery Quantiles `json:"commit_to_subscriber"`
	// Counts are the correctness figures over every event of the run (warm-up included).
	Counts deliveryCounts `json:"deliveries"`
	CPU    E2ECPU         `json:"cpu_seconds"`
	// MachineBusy is the share of all cores busy over the measured phase; LoadAvg1 at its end.
	MachineBusy float64 `json:"machine_busy_share"`
	LoadAvg1    float64 `json:"load_average_1m"`
	// Peak resident memory (VmHWM) of the path's processes; 0 for a process the path has not.
	CentrifugoRSS int64 `json:"centrifugo_peak_rss_bytes"`
	RelayRSS      int64 `json:"relay_peak_rss_bytes"`
	ConnectRSS    int64 `json:"connect_peak_rss_bytes"`
}

// E2ECPU is the CPU time of each process over the measured phase, in seconds.
type E2ECPU struct {
	Relay      float64 `json:"relay"`
	Walsender  float64 `json:"walsender"`
	Kafka      float64 `json:"kafka"`
	Centrifugo float64 `json:"centrifugo"`
	Connect    float64 `json:"connect"`
	// Postgres is every postgres process of the machine (the writer's backends, the walsender,
	// Centrifugo's sessions; other sessions too): where the Centrifugo paths do their work. A
	// backend that exited during the phase is missed.
	Postgres float64 `json:"postgres_all"`
}

// e2eSample is one reading of the metered processes.
type e2eSample struct {
	procs    E2ECPU
	postgres map[int]time.Duration
}

// endToEndScenario runs every selected path at every rate, one after the other; a path that
// fails is recorded and the next one runs.
func (b *bench) endToEndScenario(ctx context.Context) error {
	rates, err := b.opts.e2eRateList()
	if err != nil {
		return err
	}
	business := fmt.Sprintf("bench_e2e_business_%d", time.Now().UnixNano()%1e9)
	table := pgx.Identifier{"public", business}.Sanitize()
	if err := b.exec(ctx, fmt.Sprintf("CREATE TABLE %[1]s (id int PRIMARY KEY, n bigint NOT NULL, note text);\n"+
		"INSERT INTO %[1]s SELECT g, 0, repeat('b', 60) FROM generate_series(1, %[2]d) g; ANALYZE %[1]s", table, businessRows)); err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = b.exec(ctx, "DROP TABLE IF EXISTS "+table)
	}()
	var errs []error
	// Rates outside, paths inside: on a shared machine the load drifts, and the paths compared at
	// one rate then run minutes apart at most.
	for _, rate := range rates {
		for _, p := range e2ePaths {
			if !b.opts.e2eRuns(p.key) {
				continue
			}
			if ctx.Err() != nil {
				return errors.Join(append(errs, ctx.Err())...)
			}
			b.progress("scenario 10: %s at %d events/s for %s", p.name, rate, b.opts.e2eFor)
			r, err := b.endToEnd(ctx, p, business, rate)
			if err != nil {
				b.progress("  FAILED: %v", err)
				errs = append(errs, fmt.Errorf("%s at %d/s: %w", p.key, rate, err))
				continue
			}
			b.progress("  achieved %.0f events/s; commit p50 %.2f p99 %.2f ms; delivery p50 %.2f p99 %.2f p99.9 %.2f ms; delivered %d of %d, lost %d, duplicates %d, out of order %d; machine %.0f%% busy",
				r.RateAchieved, r.Commit.P50, r.Commit.P99, r.Delivery.P50, r.Delivery.P99, r.Delivery.P999,
				r.Counts.Delivered, r.Counts.Expected, r.Counts.Lost, r.Counts.Duplicates, r.Counts.OutOfOrder, 100*r.MachineBusy)
			b.res.EndToEnd = append(b.res.EndToEnd, r)
		}
	}
	return errors.Join(errs...)
}

// endToEnd runs one path at one rate: set up, Centrifugo, subscribers, a second of warm-up, the
// measured phase, then waits (at most 30 s) until every subscriber has its channel's last event.
func (b *bench) endToEnd(ctx context.Context, p e2ePath, business string, rate int) (EndToEndResult, error) {
	r := EndToEndResult{Path: p.name, Key: p.key, Rate: rate, Channels: b.opts.e2eChannels}
	side, err := p.setup(ctx, b)
	defer func() {
		if err := side.close(); err != nil {
			b.progress("cleanup of %s incomplete: %v", p.key, err)
		}
	}()
	if err != nil {
		return r, err
	}
	r.Config = side.config
	var cf *centrifugoProc
	subs := &subscribers{}
	if side.centrifugo != nil {
		if cf, err = b.startCentrifugo(ctx, b.tmp, side.centrifugo); err != nil {
			return r, err
		}
		defer cf.stop()
		if err := subs.connect(ctx, cf.wsURL(), b.opts.e2eChannels, b.opts.e2eSubscribers); err != nil {
			return r, fmt.Errorf("%w\ncentrifugo's log:\n%s", err, cf.log.Tail(20))
		}
		defer subs.close()
		r.Subscribers = len(subs.list)
	}
	w, err := b.newEventWriter(ctx, business, side, b.opts.e2eChannels)
	if err != nil {
		return r, err
	}
	defer w.close()

	// Warm-up: connections, prepared statements, Centrifugo's first publications.
	if _, err := w.run(ctx, rate, time.Second, nil); err != nil {
		return r, fmt.Errorf("warm-up: %w", err)
	}
	if cf != nil && !subs.wait(ctx, w.committed(), 30*time.Second) {
		if subs.counts(w.committed()).Delivered == 0 {
			return r, fmt.Errorf("warm-up: no subscriber received any event within 30 s\ncentrifugo's log:\n%s", cf.log.Tail(20))
		}
		b.progress("  warm-up: not every event reached every subscriber within 30 s; the counts below say which")
	}

	pids := e2ePIDs{connect: side.connect, kafka: kafkaPID(b.root), walsender: b.walsenderPID(ctx, side.slot)}
	if cf != nil {
		pids.centrifugo = cf.pid()
	}
	if side.relay != nil {
		pids.relay = side.relay.Pid()
	}
	var acks0 map[string]float64
	if side.relay != nil {
		if acks0, err = side.relay.scrape(ctx); err != nil {
			return r, err
		}
	}
	before, busy0 := pids.sample(), readMachineCPU()
	start := time.Now()
	subs.measureFrom(start)
	var commits []time.Duration
	took, err := w.run(ctx, rate, b.opts.e2eFor, &commits)
	if err != nil {
		return r, err
	}
	events := int64(len(commits))
	if cf != nil {
		subs.wait(ctx, w.committed(), 30*time.Second) // what is missing then is lost: counted below
	}
	after, busy := pids.sample(), readMachineCPU().busySince(busy0)
	r.CPU = after.minus(before)
	r.MachineBusy, r.LoadAvg1 = busy, loadAverage()
	r.Events, r.Seconds, r.RateAchieved = events, took.Seconds(), float64(events)/took.Seconds()
	r.Commit = exactQuantiles(commits, "the writer: the transaction sent (UPDATE + event, one round trip) → its commit answered")
	if cf != nil {
		r.Delivery = exactQuantiles(subs.latencies(), "subscriber's receipt − clock_timestamp() in the payload, µs, one machine clock")
		r.Counts = subs.counts(w.committed())
		r.CentrifugoRSS, _ = harness.ProcStatus(cf.pid(), "VmHWM")
	}
	if side.relay != nil {
		r.RelayRSS, _ = side.relay.PeakRSS()
		time.Sleep(200 * time.Millisecond) // the relay observes its histogram right after the ack
		acks, err := side.relay.scrape(ctx)
		if err != nil {
			return r, err
		}
		r.Ack = histogramQuantiles(minus(histogram(acks, ackHistogram), histogram(acks0, ackHistogram)),
			"relay histogram "+ackHistogram+": interpolated within buckets")
	}
	if side.connect != 0 {
		r.ConnectRSS, _ = harness.ProcStatus(side.connect, "VmHWM")
	}
	return r, nil
}

// exec runs SQL on a fresh connection to the benchmark's database.
func (b *bench) exec(ctx context.Context, sql string, args ...any) error {
	return harness.Exec(ctx, b.opts.databaseURL, sql, args...)
}

// e2ePIDs are the processes scenario 10 meters; 0 for one the path has not.
type e2ePIDs struct{ relay, walsender, kafka, centrifugo, connect int }

func (p e2ePIDs) sample() e2eSample {
	at := func(pid int) float64 {
		if pid == 0 {
			return 0
		}
		t, _ := cpuTime(pid)
		return t.Seconds()
	}
	return e2eSample{procs: E2ECPU{Relay: at(p.relay), Walsender: at(p.walsender), Kafka: at(p.kafka), Centrifugo: at(p.centrifugo),
		Connect: at(p.connect)}, postgres: postgresCPU()}
}

// minus is the CPU time used between before and s.
func (s e2eSample) minus(before e2eSample) E2ECPU {
	c, b := s.procs, before.procs
	return E2ECPU{Relay: c.Relay - b.Relay, Walsender: c.Walsender - b.Walsender, Kafka: c.Kafka - b.Kafka,
		Centrifugo: c.Centrifugo - b.Centrifugo, Connect: c.Connect - b.Connect, Postgres: cpuSince(before.postgres, s.postgres).Seconds()}
}

// walsenderPID is the pid of the walsender serving slot; 0 without a slot or an active one.
func (b *bench) walsenderPID(ctx context.Context, slot string) int {
	if slot == "" {
		return 0
	}
	conn, err := pgx.Connect(ctx, b.opts.databaseURL)
	if err != nil {
		return 0
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var pid int
	_ = conn.QueryRow(ctx, `SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&pid)
	return pid
}

// eventWriter commits the path's transaction: the business UPDATE, then the event on a channel
// with the channel's next value. Channel c belongs to connection c mod conns, which commits one
// transaction after the other, so each channel's values are committed in order.
type eventWriter struct {
	pool     *pgxpool.Pool
	conns    int
	channels int
	update   string
	event    string
	mu       sync.Mutex
	values   []int64 // per channel, the last value committed
}

func (b *bench) newEventWriter(ctx context.Context, business string, side *e2eSide, channels int) (*eventWriter, error) {
	cfg, err := pgxpool.ParseConfig(b.opts.databaseURL)
	if err != nil {
		return nil, err
	}
	if side.searchPath != "" {
		cfg.ConnConfig.RuntimeParams["search_path"] = side.searchPath
	}
	conns := e2eWriterConns(channels)
	cfg.MaxConns, cfg.MinConns = int32(conns), int32(conns) //nolint:gosec // at most 10
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &eventWriter{pool: pool, conns: conns, channels: channels, event: side.event, values: make([]int64, channels),
		update: fmt.Sprintf("UPDATE %s SET n = n + 1 WHERE id = $1", pgx.Identifier{"public", business}.Sanitize())}, nil
}

// e2eWriterConns is the writer's connections: 10, or fewer when the channels cannot be split
// evenly over 10.
func e2eWriterConns(channels int) int {
	for n := min(10, channels); n > 1; n-- {
		if channels%n == 0 {
			return n
		}
	}
	return 1
}

func (w *eventWriter) close() { w.pool.Close() }

// channel is the name of channel c in Centrifugo.
func e2eChannel(c int) string { return fmt.Sprintf("%s:%d", e2eNamespace, c) }

// committed is a copy of the channels' last committed values.
func (w *eventWriter) committed() []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int64(nil), w.values...)
}

// run commits rate transactions a second, spread over the connections, for d, and appends each
// commit's latency to commits (when not nil). A connection behind its schedule catches up
// without pause; the achieved rate says whether the path kept up.
func (w *eventWriter) run(ctx context.Context, rate int, d time.Duration, commits *[]time.Duration) (time.Duration, error) {
	interval := time.Duration(float64(time.Second) * float64(w.conns) / float64(rate))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	for c := range w.conns {
		wg.Go(func() {
			conn, err := w.pool.Acquire(ctx)
			if err != nil {
				mu.Lock()
				firstErr = errors.Join(firstErr, err)
				mu.Unlock()
				cancel()
				return
			}
			defer conn.Release()
			var lat []time.Duration
			perConn := w.channels / w.conns
			for i := 0; ; i++ {
				due := start.Add(time.Duration(i) * interval)
				if due.Sub(start) >= d || ctx.Err() != nil {
					break
				}
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
				}
				ch := c + (i%perConn)*w.conns
				w.mu.Lock()
				v := w.values[ch] + 1
				w.mu.Unlock()
				batch := &pgx.Batch{}
				batch.Queue(w.update, 1+(c*7919+i*104729)%businessRows)
				if w.event != "" {
					batch.Queue(w.event, e2eChannel(ch), v)
				}
				sent := time.Now()
				// One round trip: the statements run in one implicit transaction, committed at its Sync.
				if err := conn.SendBatch(ctx, batch).Close(); err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, fmt.Errorf("commit on %s: %w", e2eChannel(ch), err))
					mu.Unlock()
					cancel()
					return
				}
				lat = append(lat, time.Since(sent))
				w.mu.Lock()
				w.values[ch] = v
				w.mu.Unlock()
			}
			if commits != nil {
				mu.Lock()
				*commits = append(*commits, lat...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return time.Since(start), firstErr
}

// subscribers are the centrifuge-go clients of a path, each on one channel.
type subscribers struct {
	list []*subscriber
}

type subscriber struct {
	c       *centrifuge.Client
	channel int
	mu      sync.Mutex
	check   *streamCheck
	lat     []time.Duration
	from    int64 // µs since the epoch; 0: not measuring
}

// connect opens n subscribers spread evenly over the channels and waits (at most a minute)
// until each is subscribed.
func (s *subscribers) connect(ctx context.Context, wsURL string, channels, n int) error {
	tokens, err := e2eTokens()
	if err != nil {
		return err
	}
	subscribed := make(chan struct{}, n)
	for i := range n {
		sb := &subscriber{channel: i % channels, check: newStreamCheck()}
		user := fmt.Sprintf("bench-%d", i)
		tok, err := tokens.Connection(user)
		if err != nil {
			return err
		}
		subTok, err := tokens.Subscription(user, e2eChannel(sb.channel))
		if err != nil {
			return err
		}
		sb.c = centrifuge.NewJsonClient(wsURL, centrifuge.Config{Token: tok, HandshakeTimeout: 30 * time.Second})
		s.list = append(s.list, sb)
		sub, err := sb.c.NewSubscription(e2eChannel(sb.channel), centrifuge.SubscriptionConfig{Token: subTok, Positioned: true, Recoverable: true})
		if err != nil {
			return err
		}
		sub.OnPublication(func(ev centrifuge.PublicationEvent) { sb.receive(ev.Data) })
		var once sync.Once
		sub.OnSubscribed(func(centrifuge.SubscribedEvent) { once.Do(func() { subscribed <- struct{}{} }) })
		if err := sub.Subscribe(); err != nil {
			return err
		}
		if err := sb.c.Connect(); err != nil {
			return err
		}
	}
	timeout := time.After(time.Minute)
	for got := 0; got < n; got++ {
		select {
		case <-subscribed:
		case <-timeout:
			return fmt.Errorf("%d of %d subscribers subscribed within a minute", got, n)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// receive checks one publication's value and, when measuring, its latency.
func (sb *subscriber) receive(data []byte) {
	now := time.Now()
	var ev struct {
		V int64 `json:"v"`
		T int64 `json:"t"`
	}
	if err := json.Unmarshal(data, &ev); err != nil || ev.V < 1 {
		ev.V = -1 // not an event of ours: a loss of the one it stands for shows at the end
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	sb.check.observe(ev.V)
	if sb.from != 0 && ev.T >= sb.from {
		sb.lat = append(sb.lat, now.Sub(time.UnixMicro(ev.T)))
	}
}

func (s *subscribers) measureFrom(t time.Time) {
	for _, sb := range s.list {
		sb.mu.Lock()
		sb.from = t.UnixMicro()
		sb.lat = nil
		sb.mu.Unlock()
	}
}

// wait waits until every subscriber has every value committed on its channel, at most timeout.
func (s *subscribers) wait(ctx context.Context, committed []int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		all := true
		for _, sb := range s.list {
			sb.mu.Lock()
			ok := sb.check.has(committed[sb.channel])
			sb.mu.Unlock()
			if !ok {
				all = false
				break
			}
		}
		if all {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *subscribers) latencies() []time.Duration {
	var all []time.Duration
	for _, sb := range s.list {
		sb.mu.Lock()
		all = append(all, sb.lat...)
		sb.mu.Unlock()
	}
	return all
}

func (s *subscribers) counts(committed []int64) deliveryCounts {
	var c deliveryCounts
	for _, sb := range s.list {
		sb.mu.Lock()
		c.add(sb.check, committed[sb.channel])
		sb.mu.Unlock()
	}
	return c
}

func (s *subscribers) close() {
	for _, sb := range s.list {
		sb.c.Close()
	}
}

// printEndToEnd prints scenario 10's side-by-side table.
func printEndToEnd(p, row func(string, ...any), flush func(), r *Results) {
	if len(r.EndToEnd) == 0 {
		return
	}
	channels, subs := 0, 0
	for _, e := range r.EndToEnd {
		channels, subs = max(channels, e.Channels), max(subs, e.Subscribers)
	}
	p("\nEnd to end, side by side: a business UPDATE + 1 event per transaction, %d channels, %d centrifuge-go subscribers, Centrifugo v6.9.1 (a private instance per path), milliseconds",
		channels, subs)
	rows := slices.Clone(r.EndToEnd)
	slices.SortStableFunc(rows, func(a, b EndToEndResult) int { return e2ePathIndex(a.Key) - e2ePathIndex(b.Key) })
	row("path\trate/s\tachieved\tcommit p50\tcommit p99\tKafka ack p50\tp99\tdelivery p50\tp99\tp99.9\tmax\tdelivered\tlost\tdup\tlate\tCPU µs/event: relay\twalsender\tKafka\tCentrifugo\tConnect\tpostgres (all)\tmachine busy\tRSS MB: Centrifugo\trelay\tConnect\t")
	for _, e := range rows {
		per := func(s float64) string {
			if s == 0 {
				return "–"
			}
			return fmt.Sprintf("%.1f", s*1e6/float64(max(e.Events, 1)))
		}
		rss := func(b int64) string {
			if b == 0 {
				return "–"
			}
			return fmt.Sprintf("%.0f", float64(b)/mb)
		}
		delivery := "–\t–\t–\t–\t–\t–\t–\t–"
		if e.Subscribers > 0 {
			d := e.Delivery
			c := e.Counts
			delivery = fmt.Sprintf("%.2f\t%.2f\t%.2f\t%.2f\t%d/%d\t%d\t%d\t%d", d.P50, d.P99, d.P999, d.Max, c.Delivered, c.Expected, c.Lost, c.Duplicates, c.OutOfOrder)
		}
		ack := "–\t–"
		if e.Ack.Count > 0 {
			ack = fmt.Sprintf("%.1f\t%.1f", e.Ack.P50, e.Ack.P99)
		}
		row("%s\t%d\t%.0f\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f%%\t%s\t%s\t%s\t", e.Key, e.Rate, e.RateAchieved, e.Commit.P50, e.Commit.P99, ack, delivery,
			per(e.CPU.Relay), per(e.CPU.Walsender), per(e.CPU.Kafka), per(e.CPU.Centrifugo), per(e.CPU.Connect), per(e.CPU.Postgres), 100*e.MachineBusy,
			rss(e.CentrifugoRSS), rss(e.RelayRSS), rss(e.ConnectRSS))
	}
	flush()
	var sustained []string
	for _, e := range r.EndToEnd {
		if n, ok := r.Sustained[e.Key]; ok && !slices.Contains(sustained, e.Key+" "+strconv.Itoa(n)) {
			sustained = append(sustained, e.Key+" "+strconv.Itoa(n))
		}
	}
	if len(sustained) > 0 {
		p("  highest measured rate sustained (kept the rate, every event once and in order, delivery p99 < %d ms; 0 = none): %s", e2eSustainedP99Ms, strings.Join(sustained, ", "))
	}
	seen := map[string]bool{}
	for _, e := range r.EndToEnd {
		if !seen[e.Key] {
			seen[e.Key] = true
			p("  %s = %s: %s", e.Key, e.Path, e.Config)
		}
	}
	p("  commit: the writer's round trip for the transaction (one pipeline, committed at its Sync); delivery: every subscriber's receipt of every event of the measured phase.")
	p("  Kafka ack: commit → Kafka's acknowledgement, the relay's histogram (buckets 1, 2, 5, 10, 20, 50 ms…, interpolated): the part of delivery before Centrifugo's Kafka consumer.")
	p("  delivered/lost/dup/late: over the whole run, every subscriber, every event (each channel's values 1, 2, 3… in commit order); late = after a later one.")
	p("  CPU: user + system over the measured phase per committed event; the Kafka broker's and postgres (all) include every other session on the machine.")
	flush()
}

// e2ePathIndex is the path's place in e2ePaths (the report's order).
func e2ePathIndex(key string) int {
	return slices.IndexFunc(e2ePaths, func(p e2ePath) bool { return p.key == key })
}

// e2eRateList parses --e2e-rates.
func (o options) e2eRateList() ([]int, error) {
	return parseRates("--e2e-rates", o.e2eRates)
}

// e2eRuns reports whether --e2e-paths selects the path.
func (o options) e2eRuns(key string) bool {
	for _, k := range strings.Split(o.e2ePaths, ",") {
		if strings.TrimSpace(k) == key {
			return true
		}
	}
	return false
}
