//go:build cluster

package cluster

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
	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// casePages is how many Chromium pages follow the channels in each case, each a real browser
// page with an @pgoutbox/models model per channel it follows (pageChannels), connected through
// haproxy. They connect first, one after the other, so that haproxy's least-connections balance
// puts one on each Centrifugo node.
const casePages = 2

// pageChannels is the channels page i follows: 8 of the 12, the two pages overlapping on 4.
func pageChannels(channels []string, i int) []string {
	from := i * (len(channels) - 8) / (casePages - 1)
	return channels[from : from+8]
}

// pages is the browser half of a case: the app the pages call (modelserver's handlers on the
// test's counters, Centrifugo's API and WebSocket through haproxy) and the node script that
// drives Chromium (deploy/demo/e2e/cluster-pages.mjs).
type pages struct {
	t       *testing.T
	node    *harness.Node
	ready   chan struct{}
	final   chan map[string]int64
	figures chan pageFigures
}

// pageFigures is what the driver reports (its PAGES FIGURES line).
type pageFigures struct {
	Pages      int      `json:"pages"`
	Models     int      `json:"models"`
	Events     int      `json:"events"`
	Recoveries int      `json:"recoveries"`
	Resyncs    int      `json:"resyncs"`
	Visible    int      `json:"visible"`
	Duplicate  int      `json:"duplicate"`
	Anomalies  []string `json:"anomalies"`
}

func (f pageFigures) String() string {
	return fmt.Sprintf("pages=%d page_models=%d page_events=%d page_recoveries=%d page_resyncs=%d page_dups_dropped=%d page_anomalies=%d",
		f.Pages, f.Models, f.Events, f.Recoveries, f.Resyncs, f.Duplicate, len(f.Anomalies))
}

// startPages serves the app and the page, starts the driver, and waits until every page's
// models follow their channels.
func startPages(t *testing.T, s *stack, channels []string) *pages {
	t.Helper()
	node := harness.NeedNode(t, true)
	pool, err := pgxpool.New(context.Background(), s.top.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	tokens, err := modelserver.NewHS256Tokens([]byte(s.top.HMACSecret))
	if err != nil {
		t.Fatal(err)
	}
	tokens.ConnectionTTL, tokens.SubscriptionTTL = time.Hour, time.Hour
	prefix := "outbox:" + s.name + ":"
	h := &modelserver.Handlers{
		Centrifugo: &modelserver.Centrifugo{URL: s.lbURL(), APIKey: s.top.APIKey},
		Tokens:     tokens,
		DB:         pool,
		User:       func(r *http.Request) (string, error) { return "page-" + r.Header.Get("X-Page"), nil },
		Authorize: func(_ *http.Request, _, channel string) error {
			if strings.HasPrefix(channel, prefix) {
				return nil
			}
			return modelserver.Forbidden("no such channel")
		},
		OnError: func(r *http.Request, err error) { t.Logf("app: %s: %v", r.URL.Path, err) },
	}
	p := &pages{t: t, ready: make(chan struct{}), final: make(chan map[string]int64, 1), figures: make(chan pageFigures, 1)}
	mux := http.NewServeMux()
	harness.ServeModelsPage(mux)
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
		modelserver.WriteJSON(w, http.StatusOK, map[string]string{"centrifugo": s.wsURL()})
	})
	mux.Handle("GET /api/token", h.Token())
	mux.Handle("GET /api/subscription-token", h.SubscriptionToken())
	mux.Handle("GET /api/state", modelserver.StateHandler(h, func(ctx context.Context, tx pgx.Tx, channel string) (map[string]int64, error) {
		var v int64
		err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT value FROM %s_counters WHERE channel = $1`, s.name), channel).Scan(&v)
		return map[string]int64{"value": v}, err
	}))
	// The driver's one request: answered once the writers have stopped, with the final counters.
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

	follow := make([][]string, casePages)
	for i := range follow {
		follow[i] = pageChannels(channels, i)
	}
	spec, _ := json.Marshal(follow)
	artifacts, _ := filepath.Abs(filepath.Join(repoRoot, "deploy", "demo", "test-results"))
	p.node = harness.StartNode(t, node, []string{
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

func (p *pages) onLine(line string) {
	switch {
	case line == "PAGES READY":
		close(p.ready)
	case strings.HasPrefix(line, "PAGES FIGURES "):
		var f pageFigures
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "PAGES FIGURES ")), &f); err != nil {
			f.Anomalies = append(f.Anomalies, fmt.Sprintf("the driver's figures: %v: %s", err, line))
		}
		p.figures <- f
	}
}

// release gives the driver the final counters: the pages now converge while the test checks the
// centrifuge-go subscribers and Kafka.
func (p *pages) release(final map[string]int64) { p.final <- final }

// wait returns what the pages report once they have converged (or timed out); a driver that
// fails reports nothing, which fails the test.
func (p *pages) wait() pageFigures {
	p.t.Helper()
	if err := p.node.Wait(); err != nil {
		p.t.Fatalf("the browser pages' driver failed: %v", err)
	}
	select {
	case f := <-p.figures:
		return f
	default:
		p.t.Fatalf("the browser pages' driver exited without its figures")
		return pageFigures{}
	}
}
