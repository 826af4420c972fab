package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/client/modelserver"
	"github.com/pgoutbox/pgoutbox/record"
)

// result is one scenario's row.
type result struct {
	name                 string
	subscribers, chans   int
	commits, deliveries  int64
	seconds              float64
	p50, p99, p999       time.Duration
	gaps, dups           int64
	resyncs, inResync    int64 // re-reads of a channel's value, and events skipped as already in one
	nodes                []nodeUse
	relayCPU, kafkaCPU   float64 // share of one core
	pgCPU, busy          float64
	recovered            time.Duration // --kill: until every client of the dead node recovered
	affected, recoveries int
}

func (r result) String() string {
	var nodes []string
	for _, n := range r.nodes {
		nodes = append(nodes, fmt.Sprintf("%s rss=%dMiB cpu=%.0f%%", n.name, n.peakRSS>>20, n.cpu*100))
	}
	s := fmt.Sprintf("%s: %d subscribers on %d channels, %d commits, %.0f deliveries/s, p50=%v p99=%v p99.9=%v gaps=%d dups=%d resyncs=%d (events skipped as in a re-sync's state: %d); %s; relay cpu=%.0f%% kafka=%.0f%% postgres=%.0f%% machine busy=%.0f%%",
		r.name, r.subscribers, r.chans, r.commits, float64(r.deliveries)/r.seconds, ms(r.p50), ms(r.p99), ms(r.p999), r.gaps, r.dups, r.resyncs, r.inResync,
		strings.Join(nodes, ", "), r.relayCPU*100, r.kafkaCPU*100, r.pgCPU*100, r.busy*100)
	if r.affected > 0 {
		s += fmt.Sprintf("; node SIGKILLed: %d clients reconnected, %d subscriptions recovered, all within %v", r.affected, r.recoveries, ms(r.recovered))
	}
	return s
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// client is one subscriber: one WebSocket connection following one channel. Like a model of the
// SDK, it re-syncs (reads its channel's value from the database again) when the stream cannot be
// resumed — a resubscribe that Centrifugo could not recover (a client dropped as slow and back
// after its history moved on, Redis restarted empty), or a re-sync control record — and never
// counts what the re-read state already holds as a gap; past it, a skipped value is a gap and a
// value again a duplicate.
type client struct {
	c       *centrifuge.Client
	channel int
	last    int64 // the last value received, or read by a re-sync
	synced  int64 // the value the last re-sync read: an event at or below it is in that state
	mu      sync.Mutex
	// --kill: when the connection dropped, and when its subscription came back recovered.
	dropped, back time.Time
	recovered     bool
}

type scenario struct {
	o        options
	name     string
	env      map[string]string
	db       *pgxpool.Pool
	table    string
	tokens   *modelserver.Tokens
	clients  []*client
	subs     atomic.Int64
	received atomic.Int64
	gaps     atomic.Int64
	dups     atomic.Int64
	resyncs  atomic.Int64
	inResync atomic.Int64 // events skipped because a re-sync's state held them
	syncErrs atomic.Int64
	latMu    sync.Mutex
	lat      []time.Duration
	relay    *exec.Cmd
}

func runScenario(ctx context.Context, o options, topology string, kill bool) (result, error) {
	env, err := topologyEnv(topology)
	if err != nil {
		return result{}, err
	}
	s := &scenario{o: o, env: env, name: topology}
	if kill {
		s.name += " + SIGKILL of centrifugo-1 at mid-run"
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	s.table = "bench_fanout_" + hex.EncodeToString(b[:])
	if s.tokens, err = benchTokens(); err != nil {
		return result{}, err
	}
	if s.db, err = pgxpool.New(ctx, env["PGOUTBOX_DATABASE_URL"]); err != nil {
		return result{}, err
	}
	defer s.db.Close()
	defer s.cleanup()
	if err := s.setup(ctx); err != nil {
		return result{}, err
	}
	if err := s.connect(ctx); err != nil {
		return result{}, err
	}
	defer func() {
		for _, c := range s.clients {
			c.c.Close()
		}
	}()
	return s.run(ctx, kill)
}

// setup creates the outbox (`pgoutbox setup`, on the topic "outbox" that the topology's
// Centrifugo nodes consume) and starts the relay.
func (s *scenario) setup(ctx context.Context) error {
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", "bin/pgoutbox", "./cmd/pgoutbox").CombinedOutput(); err != nil {
		return fmt.Errorf("build pgoutbox: %w\n%s", err, out)
	}
	env := append(os.Environ(),
		"PGOUTBOX_DATABASE_URL="+s.env["PGOUTBOX_DATABASE_URL"],
		"PGOUTBOX_KAFKA_BROKERS="+s.env["PGOUTBOX_KAFKA_BROKERS"],
		"PGOUTBOX_TABLE="+s.table, "PGOUTBOX_SLOT="+s.table, "PGOUTBOX_PUBLICATION="+s.table,
		"PGOUTBOX_TOPIC=outbox", "PGOUTBOX_HTTP_ADDR=", "PGOUTBOX_LOG_LEVEL=warn")
	setup := exec.CommandContext(ctx, "bin/pgoutbox", "setup", "--partitions", "6", "--replication-factor", s.env["PGOUTBOX_REPLICATION_FACTOR"])
	setup.Env = env
	if out, err := setup.CombinedOutput(); err != nil {
		return fmt.Errorf("pgoutbox setup: %w\n%s", err, out)
	}
	if t := s.env["PGOUTBOX_KAFKA_REQUEST_TIMEOUT"]; t != "" {
		env = append(env, "PGOUTBOX_KAFKA_REQUEST_TIMEOUT="+t)
	}
	s.relay = exec.CommandContext(context.Background(), "bin/pgoutbox", "run")
	s.relay.Env = env
	s.relay.Stderr = os.Stderr
	return s.relay.Start()
}

func (s *scenario) cleanup() {
	if s.relay != nil && s.relay.Process != nil {
		_ = s.relay.Process.Signal(syscall.SIGTERM)
		_ = s.relay.Wait()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 60 {
		if _, err := s.db.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, s.table); err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	_, _ = s.db.Exec(ctx, fmt.Sprintf(`DROP PUBLICATION IF EXISTS %s`, s.table))
	_, _ = s.db.Exec(ctx, fmt.Sprintf(`DROP TABLE IF EXISTS %s`, s.table))
}

func (s *scenario) channelName(i int) string { return fmt.Sprintf("outbox:%s:%d", s.table, i) }

// connect opens every subscriber and waits until each is subscribed (at most 3 minutes).
func (s *scenario) connect(ctx context.Context) error {
	url := s.env["PGOUTBOX_CENTRIFUGO_WS_URL"]
	for i := range s.o.subscribers {
		cl := &client{channel: i % s.o.channels}
		user := fmt.Sprintf("bench-%d", i)
		cl.c = centrifuge.NewJsonClient(url, centrifuge.Config{Token: s.token(user, ""), HandshakeTimeout: 30 * time.Second})
		// Outbox channels are private in the shipped configuration: a subscription token each.
		sub, err := cl.c.NewSubscription(s.channelName(cl.channel), centrifuge.SubscriptionConfig{
			Token: s.token(user, s.channelName(cl.channel)), Positioned: true, Recoverable: true})
		if err != nil {
			return err
		}
		sub.OnPublication(func(ev centrifuge.PublicationEvent) { s.onPublication(ctx, cl, ev) })
		first := true
		sub.OnSubscribed(func(ev centrifuge.SubscribedEvent) {
			if first {
				first = false
				s.subs.Add(1)
			}
			if ev.WasRecovering {
				cl.mu.Lock()
				cl.back, cl.recovered = time.Now(), ev.Recovered
				cl.mu.Unlock()
				// Resumed at the stream's top without what it missed: re-sync. The client's
				// callbacks run one at a time, so no publication is handled meanwhile.
				if !ev.Recovered {
					s.resync(ctx, cl)
				}
			}
		})
		cl.c.OnDisconnected(func(centrifuge.DisconnectedEvent) {})
		cl.c.OnConnecting(func(centrifuge.ConnectingEvent) {
			cl.mu.Lock()
			if cl.dropped.IsZero() || cl.back.After(cl.dropped) {
				cl.dropped = time.Now()
			}
			cl.mu.Unlock()
		})
		if err := sub.Subscribe(); err != nil {
			return err
		}
		if err := cl.c.Connect(); err != nil {
			return err
		}
		s.clients = append(s.clients, cl)
		if i%200 == 199 {
			time.Sleep(100 * time.Millisecond) // connect in waves: no thundering handshake burst
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for s.subs.Load() < int64(s.o.subscribers) {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d subscribers subscribed within 3 minutes", s.subs.Load(), s.o.subscribers)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, cl := range s.clients { // the first connect counts as no drop
		cl.mu.Lock()
		cl.dropped, cl.back = time.Time{}, time.Time{}
		cl.mu.Unlock()
	}
	return ctx.Err()
}

// controlTag is the publication tag of pgoutbox's control header (Centrifugo forwards the
// record's pgoutbox-* headers as tags without the prefix).
var controlTag = strings.TrimPrefix(record.HeaderControl, record.HeaderPrefix)

func (s *scenario) onPublication(ctx context.Context, cl *client, ev centrifuge.PublicationEvent) {
	now := time.Now()
	if ev.Tags[controlTag] == record.ControlResync {
		s.resync(ctx, cl)
		return
	}
	var data struct {
		V int64 `json:"v"`
		T int64 `json:"t"` // the commit's clock_timestamp(), µs since the epoch
	}
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		return
	}
	cl.mu.Lock()
	switch {
	case data.V <= cl.synced:
		s.inResync.Add(1) // committed before the re-sync's read, delivered after: not new
	case data.V <= cl.last:
		s.dups.Add(1)
	case data.V > cl.last+1:
		s.gaps.Add(data.V - cl.last - 1)
		cl.last = data.V
	default:
		cl.last = data.V
	}
	cl.mu.Unlock()
	s.received.Add(1)
	d := now.Sub(time.UnixMicro(data.T))
	s.latMu.Lock()
	s.lat = append(s.lat, d)
	s.latMu.Unlock()
}

// run commits at the fixed rate for the duration, samples the processes, and at the end waits
// (at most 60 s) until every subscriber has its channel's last value.
func (s *scenario) run(ctx context.Context, kill bool) (result, error) {
	r := result{name: s.name, subscribers: s.o.subscribers, chans: s.o.channels}
	meter := newMeter(s.env, s.relay.Process.Pid)
	counters := make([]int64, s.o.channels)
	start := time.Now()
	m0 := meter.sample()
	// One writer per group of channels, each at its share of the rate: a single connection
	// cannot keep 100 commits/s on a loaded machine. Channel ch belongs to writer ch % writers,
	// so each channel's values are committed in order.
	writers := min(8, s.o.channels)
	interval := time.Second * time.Duration(writers) / time.Duration(s.o.commitRate)
	var n atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for i := 0; time.Since(start) < s.o.duration && ctx.Err() == nil; i++ {
				<-tick.C
				ch := w + (i%((s.o.channels-w+writers-1)/writers))*writers
				v := atomic.AddInt64(&counters[ch], 1)
				_, err := s.db.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (channel, name, data) VALUES ($1, 'bench', json_build_object('v', $2::bigint, 't', (extract(epoch from clock_timestamp()) * 1e6)::bigint))`, s.table),
					s.channelName(ch), v)
				if err != nil {
					errs <- err
					return
				}
				n.Add(1)
			}
		}()
	}
	var killedAt time.Time
	for time.Since(start) < s.o.duration && ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
		meter.peak()
		if kill && killedAt.IsZero() && time.Since(start) > s.o.duration/2 {
			killedAt = time.Now()
			if err := killNode(); err != nil {
				return r, err
			}
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return r, context.Cause(ctx)
	}
	select {
	case err := <-errs:
		return r, err
	default:
	}
	m1 := meter.sample()
	r.commits, r.seconds = n.Load(), time.Since(start).Seconds()
	deadline := time.Now().Add(60 * time.Second)
	for !s.caughtUp(counters) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	for _, cl := range s.clients {
		cl.mu.Lock()
		if want := counters[cl.channel]; cl.last < want {
			s.gaps.Add(want - cl.last) // never arrived
		}
		if !killedAt.IsZero() && cl.dropped.After(killedAt) {
			r.affected++
			if cl.recovered {
				r.recoveries++
			}
			if d := cl.back.Sub(killedAt); cl.back.After(cl.dropped) && d > r.recovered {
				r.recovered = d
			} else if !cl.back.After(cl.dropped) {
				r.recovered = time.Duration(-1) // one never came back
			}
		}
		cl.mu.Unlock()
	}
	r.deliveries, r.gaps, r.dups = s.received.Load(), s.gaps.Load(), s.dups.Load()
	r.resyncs, r.inResync = s.resyncs.Load(), s.inResync.Load()
	if n := s.syncErrs.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "%s: %d re-syncs could not read the database (their clients' missing values count as gaps)\n", s.name, n)
	}
	s.latMu.Lock()
	sort.Slice(s.lat, func(i, j int) bool { return s.lat[i] < s.lat[j] })
	if k := len(s.lat); k > 0 {
		r.p50, r.p99, r.p999 = s.lat[k/2], s.lat[k*99/100], s.lat[k*999/1000]
	}
	s.latMu.Unlock()
	meter.fill(&r, m0, m1)
	return r, nil
}

// resync reads the client's channel's current value from the database, as the app's state
// endpoint would, and continues from it. Each channel has one writer committing its values in
// order, so the highest value committed is the channel's state. A failed read is retried by the
// next re-sync or shows as gaps at the end; it is counted, never hidden.
func (s *scenario) resync(ctx context.Context, cl *client) {
	var v int64
	err := s.db.QueryRow(ctx, fmt.Sprintf(`SELECT coalesce(max((data->>'v')::bigint), 0) FROM %s WHERE channel = $1`, s.table),
		s.channelName(cl.channel)).Scan(&v)
	if err != nil {
		s.syncErrs.Add(1)
		return
	}
	s.resyncs.Add(1)
	cl.mu.Lock()
	cl.synced = max(cl.synced, v)
	cl.last = max(cl.last, v)
	cl.mu.Unlock()
}

func (s *scenario) caughtUp(counters []int64) bool {
	for _, cl := range s.clients {
		cl.mu.Lock()
		ok := cl.last >= counters[cl.channel]
		cl.mu.Unlock()
		if !ok {
			return false
		}
	}
	return true
}

// killNode SIGKILLs the cluster's centrifugo-1 and starts it again 3 s later, as a supervisor
// would (it is a static consumer-group member: it takes its partitions back at once).
func killNode() error {
	out, err := exec.CommandContext(context.Background(), "deploy/local/cluster.sh", "pid", "centrifugo-1").Output()
	if err != nil {
		return fmt.Errorf("pid of centrifugo-1: %w", err)
	}
	var pid int
	if _, err := fmt.Sscan(string(out), &pid); err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	go func() {
		time.Sleep(3 * time.Second)
		if out, err := exec.CommandContext(context.Background(), "deploy/local/cluster.sh", "start", "centrifugo-1").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "restart centrifugo-1: %v\n%s", err, out)
		}
	}()
	return nil
}

// token is a connection token for user, or with a channel a subscription token for it.
func (s *scenario) token(user, channel string) string {
	tok, err := s.tokens.Connection(user)
	if channel != "" {
		tok, err = s.tokens.Subscription(user, channel)
	}
	if err != nil {
		panic(err) // users and channels are the bench's own, never empty
	}
	return tok
}

// benchTokens signs as the app's backend would, with the shipped configuration's key and a TTL
// longer than the longest run.
func benchTokens() (*modelserver.Tokens, error) {
	keys, err := modelserver.ReadCentrifugoKeys("deploy/centrifugo/config.yaml")
	if err != nil {
		return nil, err
	}
	tk, err := modelserver.NewHS256Tokens([]byte(keys.HMACSecret))
	if err != nil {
		return nil, err
	}
	tk.ConnectionTTL, tk.SubscriptionTTL = 2*time.Hour, 2*time.Hour
	return tk, nil
}
