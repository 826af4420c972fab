//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgoutbox/pgoutbox/client/modelserver"
)

// The randomized end-to-end property test of live models: several Chromium pages, each with
// @pgoutbox/models models on several channels of a schema that is not the demo's board —
// per-channel counters and a keyed list — against the real relay, Kafka, Centrifugo and an app
// built on client/modelserver. Writers in Go hold transactions open across bootstraps and commit
// out of xid order; the pages make optimistic writes, some refused by a server rule; the pages'
// driver (deploy/demo/e2e/models-property.test.mjs) forces reconnects, a Centrifugo restart
// (new epoch), a relay SIGKILL, a page hidden while the history it would recover from is lost,
// and a simulated machine sleep. At the end every page's confirmed state equals the database's,
// no event was applied twice (merge adds, so a duplicate or a missed event shows in the sum),
// and every optimistic write settled exactly once, as the server's ledger says.
//
// PGOUTBOX_MODELS_PROPERTY_SEEDS=n runs n seeds (default 2; `make bench` runs 100, see
// deploy/local/models-bench.sh), and PGOUTBOX_MODELS_PROPERTY_SEED=s starts from seed s.
// PGOUTBOX_MODELS_LATENCY_RATE=r measures instead the click→confirmed latency of optimistic
// writes at r a second (`make bench`: 100).

const (
	propCounters = 3 // counter channels outbox:ctr-0…
	propLists    = 1 // keyed-list channels outbox:list-0…
	propRefuse   = 7 // the server refuses an increment whose new value is a multiple of this
)

func TestModels_Property(t *testing.T) {
	node := harness.NeedNode(t, true)
	seeds, _ := strconv.Atoi(harness.Getenv("PGOUTBOX_MODELS_PROPERTY_SEEDS", "2"))
	first, _ := strconv.Atoi(harness.Getenv("PGOUTBOX_MODELS_PROPERTY_SEED", "1"))
	e, relayEnv := harness.NewSchemaOutbox(t, 2)
	schema := e.Name
	var relayMu sync.Mutex
	relay := e.StartRelay(t, relayEnv...)
	cf := harness.StartCentrifugo(t, e.Brokers, schema)

	pool, err := pgxpool.New(context.Background(), e.DatabaseURL+sep(e.DatabaseURL)+"search_path="+schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	app := &propApp{pool: pool, ms: &modelserver.Mutations{DB: pool, Outbox: modelserver.Outbox{Send: "pgoutbox_send"}}}
	app.migrate(t)

	mux := http.NewServeMux()
	app.routes(t, mux, cf)
	var writers *propWriters
	mux.HandleFunc("POST /control/{what}", func(w http.ResponseWriter, r *http.Request) {
		switch what := r.PathValue("what"); what {
		case "relay-kill":
			relayMu.Lock()
			relay.Kill()
			relayMu.Unlock()
		case "relay-start":
			relayMu.Lock()
			relay = e.StartRelay(t, relayEnv...)
			relayMu.Unlock()
		case "centrifugo-restart":
			cf.Restart()
		case "writers-start":
			seed, _ := strconv.Atoi(r.URL.Query().Get("seed"))
			writers = app.startWriters(uint64(seed))
		case "writers-stop":
			n := writers.stop()
			modelserver.WriteJSON(w, 200, map[string]any{"transactions": n})
			return
		default:
			http.Error(w, "unknown control "+what, 404)
			return
		}
		t.Logf("control: %s", r.PathValue("what"))
		modelserver.WriteJSON(w, 200, map[string]string{})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	artifacts, _ := filepath.Abs(filepath.Join(repoRoot, "deploy", "demo", "test-results"))
	harness.RunNode(t, node, []string{
		"PROP_URL=http://" + ln.Addr().String(),
		"PROP_SEEDS=" + strconv.Itoa(seeds),
		"PROP_FIRST_SEED=" + strconv.Itoa(first),
		"PROP_COUNTERS=" + strconv.Itoa(propCounters),
		"PROP_LISTS=" + strconv.Itoa(propLists),
		"PROP_ARTIFACTS=" + artifacts,
		"PROP_LATENCY_RATE=" + os.Getenv("PGOUTBOX_MODELS_LATENCY_RATE"),
	}, "--test", "--test-reporter=spec", "--test-concurrency=1", "deploy/demo/e2e/models-property.test.mjs")
}

// needModelsPackage builds @pgoutbox/models (client/models) and returns its folder; the page
// imports its dist/ and centrifuge's ESM build. deploy/demo/npm.sh (harness.NeedNode) installs and builds
// it, one caller at a time, so that no test rebuilds dist/ while another reads it.
func needModelsPackage(t *testing.T) string {
	t.Helper()
	harness.NeedNode(t, false)
	return filepath.Join(repoRoot, "client", "models")
}

// propApp is the property test's application: counters and a keyed list, on modelserver.
type propApp struct {
	pool *pgxpool.Pool
	ms   *modelserver.Mutations
}

func (a *propApp) migrate(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{
		`CREATE TABLE counters (channel text PRIMARY KEY, value int NOT NULL DEFAULT 0)`,
		`CREATE TABLE items (channel text NOT NULL, id text NOT NULL, title text NOT NULL, edits int NOT NULL, PRIMARY KEY (channel, id))`,
	} {
		if _, err := a.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for i := range propCounters {
		if _, err := a.pool.Exec(ctx, `INSERT INTO counters (channel) VALUES ($1)`, fmt.Sprintf("outbox:ctr-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.ms.Setup(ctx); err != nil {
		t.Fatal(err)
	}
}

// read is the state of one channel: {value} of a counter, {items: {id: {title, edits}}} of a list.
func (a *propApp) read(ctx context.Context, tx pgx.Tx, channel string) (any, error) {
	if strings.HasPrefix(channel, "outbox:ctr-") {
		var v int
		err := tx.QueryRow(ctx, `SELECT value FROM counters WHERE channel = $1`, channel).Scan(&v)
		return map[string]int{"value": v}, err
	}
	rows, err := tx.Query(ctx, `SELECT id, title, edits FROM items WHERE channel = $1`, channel)
	if err != nil {
		return nil, err
	}
	items := map[string]any{}
	for rows.Next() {
		var id, title string
		var edits int
		if err := rows.Scan(&id, &title, &edits); err != nil {
			return nil, err
		}
		items[id] = map[string]any{"title": title, "edits": edits}
	}
	return map[string]any{"items": items}, rows.Err()
}

// change applies one change in tx and returns its event: "incr" {by} on a counter (refused when
// its new value would be a multiple of propRefuse), "put" {id, title} on a list (refused when the title says "forbidden").
func (a *propApp) change(ctx context.Context, tx pgx.Tx, channel, name string, data json.RawMessage) (modelserver.Change, error) {
	ev := modelserver.Event{Channel: channel, Name: name, Data: data}
	switch name {
	case "incr":
		var in struct{ By int }
		if json.Unmarshal(data, &in) != nil || in.By < 1 || in.By > 100 {
			return modelserver.Change{}, modelserver.BadRequest("incr: want {by: 1..100}")
		}
		var v int
		if err := tx.QueryRow(ctx, `UPDATE counters SET value = value + $2 WHERE channel = $1 RETURNING value`, channel, in.By).Scan(&v); err != nil {
			return modelserver.Change{}, modelserver.BadRequest("no such counter")
		}
		if v%propRefuse == 0 {
			return modelserver.Change{Event: ev, Reject: fmt.Sprintf("a counter never stops on a multiple of %d", propRefuse)}, nil
		}
	case "put":
		var in struct{ ID, Title string }
		if json.Unmarshal(data, &in) != nil || in.ID == "" {
			return modelserver.Change{}, modelserver.BadRequest("put: want {id, title}")
		}
		if strings.Contains(in.Title, "forbidden") {
			return modelserver.Change{Event: ev, Reject: "that title is forbidden"}, nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO items AS i (channel, id, title, edits) VALUES ($1, $2, $3, 1)
			ON CONFLICT (channel, id) DO UPDATE SET title = EXCLUDED.title, edits = i.edits + 1`, channel, in.ID, in.Title); err != nil {
			return modelserver.Change{}, err
		}
	default:
		return modelserver.Change{}, modelserver.BadRequest("unknown mutation " + name)
	}
	return modelserver.Change{Event: ev}, nil
}

func (a *propApp) routes(t *testing.T, mux *http.ServeMux, cf *harness.Centrifugo) {
	h := &modelserver.Handlers{
		Centrifugo: cf.API(), Tokens: cf.Tokens(), DB: a.pool, Mutations: a.ms,
		User: func(r *http.Request) (string, error) { return r.Header.Get("X-Page"), nil },
		Authorize: func(_ *http.Request, _, channel string) error {
			if strings.HasPrefix(channel, "outbox:ctr-") || strings.HasPrefix(channel, "outbox:list-") {
				return nil
			}
			return modelserver.Forbidden("no such channel")
		},
		OnError: func(r *http.Request, err error) { t.Logf("app: %s: %v", r.URL.Path, err) },
	}
	mux.Handle("GET /api/token", h.Token())
	mux.Handle("GET /api/subscription-token", h.SubscriptionToken())
	mux.Handle("GET /api/state", modelserver.StateHandler(h, a.read))
	mux.Handle("POST /api/mutations", h.Mutation(func(ctx context.Context, tx pgx.Tx, m modelserver.Mutation) (modelserver.Change, error) {
		var in struct {
			Channel string          `json:"channel"`
			Data    json.RawMessage `json:"data"`
		}
		if json.Unmarshal(m.Data, &in) != nil {
			return modelserver.Change{}, modelserver.BadRequest("want {channel, data}")
		}
		return a.change(ctx, tx, in.Channel, m.Name, in.Data)
	}))
	// The ledger, for the driver's check that every optimistic write settled as the server decided.
	mux.HandleFunc("GET /ledger", func(w http.ResponseWriter, r *http.Request) {
		rows, _ := a.pool.Query(r.Context(), `SELECT mutation_id, rejected FROM pgoutbox_mutations`)
		out := map[string]bool{}
		for rows.Next() {
			var id string
			var rejected bool
			if rows.Scan(&id, &rejected) == nil {
				out[id] = rejected
			}
		}
		modelserver.WriteJSON(w, 200, out)
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
		modelserver.WriteJSON(w, 200, map[string]string{"centrifugo": cf.WSURL()})
	})
	harness.ServeModelsPage(mux)
}

// propWriters are background writers: each transaction writes one event (an increment, or a
// put on the list), some hold their transaction open 0.2-1.5 s, and on the list two
// transactions are interleaved so that the one with the higher xid commits first.
type propWriters struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	n      int
}

func (a *propApp) startWriters(seed uint64) *propWriters {
	ctx, cancel := context.WithCancel(context.Background())
	w := &propWriters{cancel: cancel}
	for g := range 3 {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			for ctx.Err() == nil {
				if g == 2 {
					a.interleaved(ctx, rng, w)
				} else {
					a.writeOne(ctx, rng, w, fmt.Sprintf("outbox:ctr-%d", rng.IntN(propCounters)), "incr", fmt.Sprintf(`{"by":%d}`, 1+rng.IntN(3)))
				}
				sleepCtx(ctx, time.Duration(50+rng.IntN(250))*time.Millisecond)
			}
		}()
	}
	return w
}

// writeOne runs one transaction with one change, held open for a while one time in four.
func (a *propApp) writeOne(ctx context.Context, rng *rand.Rand, w *propWriters, channel, name, data string) {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	ch, err := a.change(ctx, tx, channel, name, json.RawMessage(data))
	if err != nil || ch.Reject != "" {
		return
	}
	if _, err := a.ms.Outbox.Write(ctx, tx, ch.Event); err != nil {
		return
	}
	if rng.IntN(4) == 0 {
		sleepCtx(ctx, time.Duration(200+rng.IntN(1300))*time.Millisecond)
	}
	if tx.Commit(ctx) == nil {
		w.count()
	}
}

// interleaved opens two transactions on the list: the first takes its xid, the second commits
// first, then the first — a commit order that is not the xid order, across bootstraps.
func (a *propApp) interleaved(ctx context.Context, rng *rand.Rand, w *propWriters) {
	list := fmt.Sprintf("outbox:list-%d", rng.IntN(propLists))
	tx1, err := a.pool.Begin(ctx)
	if err != nil {
		return
	}
	defer func() { _ = tx1.Rollback(context.Background()) }()
	put := func(tx pgx.Tx) bool {
		data := fmt.Sprintf(`{"id":"w%d","title":"writer %d"}`, rng.IntN(6), rng.IntN(1000))
		ch, err := a.change(ctx, tx, list, "put", json.RawMessage(data))
		if err != nil {
			return false
		}
		_, err = a.ms.Outbox.Write(ctx, tx, ch.Event)
		return err == nil
	}
	if !put(tx1) {
		return
	}
	sleepCtx(ctx, time.Duration(100+rng.IntN(900))*time.Millisecond)
	a.writeOne(ctx, rng, w, list, "put", fmt.Sprintf(`{"id":"v%d","title":"second %d"}`, rng.IntN(6), rng.IntN(1000)))
	if tx1.Commit(ctx) == nil {
		w.count()
	}
}

func (w *propWriters) count() {
	w.mu.Lock()
	w.n++
	w.mu.Unlock()
}

// stop ends the writers and returns how many transactions they committed.
func (w *propWriters) stop() int {
	if w == nil {
		return 0
	}
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.n
	w.n = 0
	return n
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
