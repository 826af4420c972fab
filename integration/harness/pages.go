package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/client/modelserver"
)

// CounterPagesConfig is what StartCounterPages needs: the Centrifugo the pages connect to, the
// database table of the channels' counters (channel text, value bigint), and the channels each
// page follows, one @pgoutbox/models model per channel. The channels' events are `counter`
// events, {"v": the channel's counter after the event's commit}: the page adds 1, and records a
// v that does not follow its state's value (a gap, or an event applied twice).
type CounterPagesConfig struct {
	Centrifugo  *modelserver.Centrifugo // the server API: the state endpoint's stream positions
	Tokens      *modelserver.Tokens     // signs the pages' connection and subscription tokens
	WSURL       string                  // the WebSocket URL the pages connect to
	DatabaseURL string
	Counters    string     // the counters table, as SQL names it
	Channels    [][]string // one list of channels per page
}

// Pages is the browser half of a test: real Chromium pages on the live-models test page
// (integration/testdata/models-property, served with ServeModelsPage), driven by
// deploy/demo/e2e/cluster-pages.mjs, and the app they call (modelserver's handlers).
type Pages struct {
	t       *testing.T
	node    *Node
	ready   chan struct{}
	final   chan map[string]int64
	figures chan PageFigures
}

// PageFigures is what the driver reports once the pages converged (its PAGES FIGURES line).
type PageFigures struct {
	Pages      int      `json:"pages"`
	Models     int      `json:"models"`
	Events     int      `json:"events"`     // events applied (not skipped as replays)
	Recoveries int      `json:"recoveries"` // resubscribes resumed from history
	Resyncs    int      `json:"resyncs"`    // syncs after each model's first
	Visible    int      `json:"visible"`    // events skipped as in the bootstrap's snapshot
	Duplicate  int      `json:"duplicate"`  // re-sent events skipped
	Anomalies  []string `json:"anomalies"`  // a page that did not converge, an event applied twice, a gap, an error
}

func (f PageFigures) String() string {
	return fmt.Sprintf("pages=%d page_models=%d page_events=%d page_recoveries=%d page_resyncs=%d page_dups_dropped=%d page_anomalies=%d",
		f.Pages, f.Models, f.Events, f.Recoveries, f.Resyncs, f.Duplicate, len(f.Anomalies))
}

// StartCounterPages serves the app and the page, starts the driver, and waits until every
// page's models follow their channels (bootstrapped and subscribed).
func StartCounterPages(t *testing.T, cfg CounterPagesConfig) *Pages {
	t.Helper()
	node := NeedNode(t, true)
	pool, err := pgxpool.New(context.Background(), cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	allowed := map[string]bool{}
	for _, chans := range cfg.Channels {
		for _, c := range chans {
			allowed[c] = true
		}
	}
	h := &modelserver.Handlers{
		Centrifugo: cfg.Centrifugo,
		Tokens:     cfg.Tokens,
		DB:         pool,
		User:       func(r *http.Request) (string, error) { return "page-" + r.Header.Get("X-Page"), nil },
		Authorize: func(_ *http.Request, _, channel string) error {
			if allowed[channel] {
				return nil
			}
			return modelserver.Forbidden("no such channel")
		},
		OnError: func(r *http.Request, err error) { t.Logf("app: %s: %v", r.URL.Path, err) },
	}
	p := &Pages{t: t, ready: make(chan struct{}), final: make(chan map[string]int64, 1), figures: make(chan PageFigures, 1)}
	mux := http.NewServeMux()
	ServeModelsPage(mux)
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
		modelserver.WriteJSON(w, http.StatusOK, map[string]string{"centrifugo": cfg.WSURL})
	})
	mux.Handle("GET /api/token", h.Token())
	mux.Handle("GET /api/subscription-token", h.SubscriptionToken())
	mux.Handle("GET /api/state", modelserver.StateHandler(h, func(ctx context.Context, tx pgx.Tx, channel string) (map[string]int64, error) {
		var v int64
		err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT value FROM %s WHERE channel = $1`, cfg.Counters), channel).Scan(&v)
		return map[string]int64{"value": v}, err
	}))
	// The driver's one request: answered once the test released the final counters.
	mux.HandleFunc("GET /control/final", func(w http.ResponseWriter, r *http.Request) {
		select {
		case final := <-p.final:
			modelserver.WriteJSON(w, http.StatusOK, final)
		case <-r.Context().Done():
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	spec, _ := json.Marshal(cfg.Channels)
	artifacts, _ := filepath.Abs(filepath.Join(RepoRoot(), "deploy", "demo", "test-results"))
	p.node = StartNode(t, node, []string{
		"PAGES_URL=http://" + ln.Addr().String(),
		"PAGES_CHANNELS=" + string(spec),
		"PAGES_ARTIFACTS=" + artifacts,
	}, p.onLine, "deploy/demo/e2e/cluster-pages.mjs")
	select {
	case <-p.ready:
	case <-p.node.Done():
		t.Fatalf("the browser pages' driver exited before its pages were ready: %v", p.node.Wait())
	case <-time.After(3 * time.Minute):
		t.Fatalf("the browser pages were not ready within 3 minutes")
	}
	return p
}

func (p *Pages) onLine(line string) {
	switch {
	case line == "PAGES READY":
		close(p.ready)
	case strings.HasPrefix(line, "PAGES FIGURES "):
		var f PageFigures
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "PAGES FIGURES ")), &f); err != nil {
			f.Anomalies = append(f.Anomalies, fmt.Sprintf("the driver's figures: %v: %s", err, line))
		}
		p.figures <- f
	}
}

// Release gives the driver the final counters: the pages now converge to them while the test
// checks the rest.
func (p *Pages) Release(final map[string]int64) { p.final <- final }

// Wait returns what the pages report once they have converged (or timed out); a driver that
// fails reports nothing, which fails the test.
func (p *Pages) Wait() PageFigures {
	p.t.Helper()
	if err := p.node.Wait(); err != nil {
		p.t.Fatalf("the browser pages' driver failed: %v", err)
	}
	select {
	case f := <-p.figures:
		return f
	default:
		p.t.Fatalf("the browser pages' driver exited without its figures")
		return PageFigures{}
	}
}
