//go:build cluster

package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/jackc/pgx/v5"

	"github.com/pgoutbox/pgoutbox/checkpoint"
	"github.com/pgoutbox/pgoutbox/integration/harness"
	"github.com/pgoutbox/pgoutbox/record"
)

// writers commit on every channel: one goroutine per channel, each transaction adds 1 to the
// channel's counter (the ground truth) and writes an outbox row carrying the new value.
type writers struct {
	s        *stack
	channels []string
	stopCh   chan struct{}
	wg       sync.WaitGroup

	mu      sync.Mutex
	commits map[string][]time.Time // per channel: when value i+1 committed
	errs    []error
}

func startWriters(s *stack, channels []string, every time.Duration) *writers {
	w := &writers{s: s, channels: channels, stopCh: make(chan struct{}), commits: map[string][]time.Time{}}
	for _, ch := range channels {
		s.exec(fmt.Sprintf(`INSERT INTO %s_counters VALUES ($1, 0)`, s.name), ch)
	}
	for _, ch := range channels {
		w.wg.Add(1)
		go w.write(ch, every)
	}
	return w
}

func (w *writers) write(channel string, every time.Duration) {
	defer w.wg.Done()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.s.top.DatabaseURL)
	if err != nil {
		w.fail(err)
		return
	}
	defer func() { _ = conn.Close(ctx) }()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-w.stopCh:
			return
		case <-tick.C:
		}
		var v int64
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, fmt.Sprintf(`UPDATE %s_counters SET value = value + 1 WHERE channel = $1 RETURNING value`, w.s.name), channel).Scan(&v); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (channel, name, data) VALUES ($1, 'counter', $2)`, w.s.name),
				channel, fmt.Sprintf(`{"v": %d}`, v))
			return err
		})
		if err != nil {
			w.fail(fmt.Errorf("commit on %s: %w", channel, err))
			return
		}
		w.mu.Lock()
		w.commits[channel] = append(w.commits[channel], time.Now())
		w.mu.Unlock()
	}
}

func (w *writers) fail(err error) {
	w.mu.Lock()
	w.errs = append(w.errs, err)
	w.mu.Unlock()
}

// stop ends the writers and returns each channel's final counter.
func (w *writers) stop(t *testing.T) map[string]int64 {
	t.Helper()
	close(w.stopCh)
	w.wg.Wait()
	if len(w.errs) > 0 {
		t.Fatalf("writers: %v", errors.Join(w.errs...))
	}
	final := map[string]int64{}
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch, c := range w.commits {
		final[ch] = int64(len(c))
	}
	return final
}

func (w *writers) commitTime(channel string, v int64) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.commits[channel]
	if v < 1 || int(v) > len(c) {
		return time.Time{}, false
	}
	return c[v-1], true
}

func (w *writers) total() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.commits {
		n += len(c)
	}
	return n
}

// chanState is one subscriber's view of one channel, bootstrapped with the README's recipe
// (stream position first, then the state in a snapshot) and updated with checkpoint's rules.
type chanState struct {
	value   int64
	snap    checkpoint.Snapshot
	cursors checkpoint.Cursors
	// booted: bootstrapped since the last subscribe. centrifuge-go subscribes "recovering" from
	// the position GetState returned, which is no recovery.
	booted bool
}

// subscriber is one WebSocket client (centrifuge-go) following every channel through haproxy.
type subscriber struct {
	s    *stack
	w    *writers
	name string

	mu         sync.Mutex
	state      map[string]*chanState
	bootstraps int // GetState calls, the first subscribe of each channel included
	recoveries int // resubscribes that recovered from history (recovered: true) without a GetState
	applied    int
	dups       int // events at or before the last applied position (dropped, not applied)
	visible    int // events already in a bootstrapped state (dropped)
	anomalies  []string
	latencies  []latency
	client     *centrifuge.Client
}

type latency struct {
	committed time.Time
	d         time.Duration
}

func newSubscriber(s *stack, w *writers, name string, channels []string) *subscriber {
	c := &subscriber{s: s, w: w, name: name, state: map[string]*chanState{}}
	for _, ch := range channels {
		c.state[ch] = &chanState{}
	}
	return c
}

func (c *subscriber) getState(channel string) func(centrifuge.SubscriptionGetStateEvent) (centrifuge.StreamPosition, error) {
	return func(centrifuge.SubscriptionGetStateEvent) (centrifuge.StreamPosition, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		offset, epoch, err := c.s.streamTop(ctx, channel)
		if err != nil {
			return centrifuge.StreamPosition{}, err
		}
		snap, value, err := harness.ReadCounter(ctx, c.s.top.DatabaseURL, c.s.name+"_counters", channel)
		if err != nil {
			return centrifuge.StreamPosition{}, err
		}
		c.mu.Lock()
		c.state[channel] = &chanState{value: value, snap: snap, booted: true}
		c.bootstraps++
		c.mu.Unlock()
		return centrifuge.StreamPosition{Offset: offset, Epoch: epoch}, nil
	}
}

func (c *subscriber) onPublication(channel string) func(centrifuge.PublicationEvent) {
	return func(ev centrifuge.PublicationEvent) {
		now := time.Now()
		c.mu.Lock()
		defer c.mu.Unlock()
		st := c.state[channel]
		xid, err := strconv.ParseUint(ev.Tags["xid"], 10, 64)
		if err != nil {
			c.anomalies = append(c.anomalies, fmt.Sprintf("%s: tag xid %q: %v", channel, ev.Tags["xid"], err))
			return
		}
		pos, err := record.ParsePosition(ev.Tags["position"])
		if err != nil {
			c.anomalies = append(c.anomalies, fmt.Sprintf("%s: %v", channel, err))
			return
		}
		if st.snap.Visible(xid) {
			c.visible++
			return
		}
		if !st.cursors.Apply(channel, pos) {
			c.dups++
			return
		}
		var data struct{ V int64 }
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			c.anomalies = append(c.anomalies, fmt.Sprintf("%s: data %s: %v", channel, ev.Data, err))
			return
		}
		if data.V != st.value+1 {
			c.anomalies = append(c.anomalies, fmt.Sprintf("%s: applied value %d on state %d (offset %d): a gap or a double apply", channel, data.V, st.value, ev.Offset))
		}
		st.value = data.V
		c.applied++
		if at, ok := c.w.commitTime(channel, data.V); ok {
			c.latencies = append(c.latencies, latency{committed: at, d: now.Sub(at)})
		}
	}
}

func (c *subscriber) start(t *testing.T) {
	t.Helper()
	client := centrifuge.NewJsonClient(c.s.wsURL(), centrifuge.Config{Token: c.s.token(c.name), HandshakeTimeout: 15 * time.Second})
	c.client = client
	t.Cleanup(client.Close)
	for ch := range c.state {
		sub, err := client.NewSubscription(ch, centrifuge.SubscriptionConfig{Token: c.s.subToken(c.name, ch), Positioned: true, Recoverable: true, GetState: c.getState(ch)})
		if err != nil {
			t.Fatal(err)
		}
		sub.OnPublication(c.onPublication(ch))
		sub.OnSubscribed(func(ev centrifuge.SubscribedEvent) {
			c.mu.Lock()
			defer c.mu.Unlock()
			st := c.state[ch]
			if ev.WasRecovering && ev.Recovered && !st.booted {
				c.recoveries++
			}
			st.booted = false
		})
		if err := sub.Subscribe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Connect(); err != nil {
		t.Logf("%s: first connect failed, the SDK retries: %v", c.name, err)
	}
}

func (c *subscriber) caughtUp(final map[string]int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ch, v := range final {
		if c.state[ch].value != v {
			return false
		}
	}
	return true
}

// fleet is the subscribers of one test.
type fleet []*subscriber

func startFleet(t *testing.T, s *stack, w *writers, n int) fleet {
	t.Helper()
	var f fleet
	for i := range n {
		c := newSubscriber(s, w, fmt.Sprintf("user-%d", i), w.channels)
		c.start(t)
		f = append(f, c)
	}
	// Every channel bootstrapped once on every subscriber before the fault.
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if f.sum(func(c *subscriber) int { return c.bootstraps }) >= n*len(w.channels) {
			return f
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("subscribers did not all subscribe within 90s (%d of %d bootstraps)", f.sum(func(c *subscriber) int { return c.bootstraps }), n*len(w.channels))
	return nil
}

func (f fleet) sum(get func(*subscriber) int) int {
	n := 0
	for _, c := range f {
		c.mu.Lock()
		n += get(c)
		c.mu.Unlock()
	}
	return n
}

// figures is what one fault case reports.
type figures struct {
	events, subscribers, channels      int
	recoveries, resyncs, dupsDropped   int
	anomalies, kafkaRecords, kafkaDups int
	kafkaMissing                       int
	relayStarts, relayUnplannedExits   int
	p50, p99, maxAll, maxAfterFault    time.Duration
	converged                          time.Duration
	pages                              pageFigures // the browser pages'
}

func (f figures) String() string {
	return fmt.Sprintf("relay_starts=%d relay_unplanned_exits=%d events=%d subscribers=%d channels=%d recoveries=%d resyncs=%d dups_dropped=%d anomalies=%d %s kafka_records=%d kafka_dups=%d kafka_missing=%d latency_p50=%v p99=%v max=%v max_after_fault=%v converged_in=%v",
		f.relayStarts, f.relayUnplannedExits, f.events, f.subscribers, f.channels, f.recoveries, f.resyncs, f.dupsDropped, f.anomalies, f.pages, f.kafkaRecords, f.kafkaDups, f.kafkaMissing,
		f.p50.Round(time.Millisecond), f.p99.Round(time.Millisecond), f.maxAll.Round(time.Millisecond), f.maxAfterFault.Round(time.Millisecond), f.converged.Round(time.Millisecond))
}

// finish waits until every subscriber holds the database's final counters, then checks the
// subscribers and the browser pages (no anomaly) and Kafka (each event exactly once), and
// returns the figures.
func finish(t *testing.T, s *stack, w *writers, f fleet, p *pages, faultAt time.Time, timeout time.Duration) figures {
	t.Helper()
	final := w.stop(t)
	p.Release(final)
	stopped := time.Now()
	deadline := stopped.Add(timeout)
	for {
		all := true
		for _, c := range f {
			all = all && c.caughtUp(final)
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			for _, c := range f {
				c.mu.Lock()
				for ch, v := range final {
					if c.state[ch].value != v {
						t.Errorf("%s: %s at %d, the database at %d", c.name, ch, c.state[ch].value, v)
					}
				}
				c.mu.Unlock()
			}
			t.Fatalf("subscribers did not converge within %v of the writers' stop", timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	fig := figures{events: w.total(), subscribers: len(f), channels: len(w.channels), converged: time.Since(stopped)}
	var all []time.Duration
	for _, c := range f {
		c.mu.Lock()
		fig.recoveries += c.recoveries
		fig.resyncs += c.bootstraps - len(w.channels) // beyond each channel's first subscribe
		fig.dupsDropped += c.dups
		fig.anomalies += len(c.anomalies)
		for i, a := range c.anomalies {
			if i < 5 {
				t.Errorf("%s: %s", c.name, a)
			}
		}
		for _, l := range c.latencies {
			all = append(all, l.d)
			if l.committed.After(faultAt) && l.d > fig.maxAfterFault {
				fig.maxAfterFault = l.d
			}
		}
		c.mu.Unlock()
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) > 0 {
		fig.p50, fig.p99, fig.maxAll = all[len(all)/2], all[len(all)*99/100], all[len(all)-1]
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	seen, records, err := s.readTopic(ctx)
	if err != nil {
		t.Fatalf("read the topic: %v", err)
	}
	fig.kafkaRecords = records
	for ch, n := range final {
		for v := int64(1); v <= n; v++ {
			switch c := seen[ch][v]; {
			case c == 0:
				fig.kafkaMissing++
			case c > 1:
				fig.kafkaDups += c - 1
			}
		}
	}
	if fig.kafkaMissing > 0 || fig.kafkaDups > 0 || records != fig.events {
		t.Errorf("Kafka: %d records for %d committed events, %d missing, %d duplicates", records, fig.events, fig.kafkaMissing, fig.kafkaDups)
	}
	if fig.anomalies > 0 {
		t.Errorf("%d anomalies at the subscribers", fig.anomalies)
	}
	fig.pages = p.Wait()
	for _, a := range fig.pages.Anomalies {
		t.Logf("browser page anomaly: %s", a)
	}
	if len(fig.pages.Anomalies) > 0 {
		t.Errorf("%d anomalies at the browser pages (logged above)", len(fig.pages.Anomalies))
	}
	var exits []string
	fig.relayStarts, fig.relayUnplannedExits, exits = s.relayStarts()
	if fig.relayUnplannedExits > 0 {
		// Not a failure of the promise (the supervisor restarts it, as in production), but a
		// finding: say what the relay said.
		t.Logf("the relay exited %d time(s) on its own; the last lines of each run:\n%s", fig.relayUnplannedExits, strings.Join(exits, "\n---\n"))
	}
	t.Logf("FIGURES %s: %s", t.Name(), fig)
	return fig
}
