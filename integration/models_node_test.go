//go:build integration

package integration

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/jackc/pgx/v5"
	"github.com/pgoutbox/pgoutbox/client/modelserver"
)

// TestModels_NodeClient: the client SDK (@pgoutbox/models, client/models) in Node ≥ 20 with a
// WebSocket implementation passed in, on real services: client/modelserver's handlers over a
// counter table, the relay, Kafka, Centrifugo with the shipped configuration (private channels:
// subscription tokens). client/models/e2e/node-client.mjs bootstraps, sees its optimistic change
// confirmed by its event, another writer's change, a refusal rolled back with the server's
// reason, and exits by itself after close() (nothing left running).
func TestModels_NodeClient(t *testing.T) {
	t.Parallel()
	node := harness.NeedNode(t, false) // builds client/models too (deploy/demo/npm.sh)
	e := harness.NewOutbox(t, 1)
	harness.ExecSQL(t, e.DatabaseURL, "ALTER TABLE "+e.Name+" ADD COLUMN mutation_id text, ADD COLUMN rejected boolean")
	e.StartRelay(t, "PGOUTBOX_MUTATION_ID_COLUMN=mutation_id", "PGOUTBOX_REJECTED_COLUMN=rejected")
	cf := harness.StartCentrifugo(t, e.Brokers, e.Name)

	app, pool := newCounterApp(t, e.DatabaseURL)
	app.ms.Outbox = modelserver.Outbox{Table: "public." + e.Name}
	channel := "outbox:" + e.Name
	if _, err := pool.Exec(context.Background(), "INSERT INTO "+app.schema+".counters (channel, value) VALUES ($1, 1)", channel); err != nil {
		t.Fatal(err)
	}
	h := &modelserver.Handlers{
		Centrifugo: cf.API(), Tokens: cf.Tokens(), DB: pool, Mutations: app.ms,
		User:      func(*http.Request) (string, error) { return "alice", nil },
		Authorize: func(*http.Request, string, string) error { return nil },
		OnError:   func(r *http.Request, err error) { t.Logf("%s: %v", r.URL.Path, err) },
	}
	type counter struct {
		Value int `json:"value"`
	}
	read := func(ctx context.Context, tx pgx.Tx, ch string) (counter, error) {
		var c counter
		err := tx.QueryRow(ctx, "SELECT coalesce((SELECT value FROM "+app.schema+".counters WHERE channel = $1), 0)", ch).Scan(&c.Value)
		return c, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/token", h.Token())
	mux.Handle("GET /api/subscription-token", h.SubscriptionToken())
	mux.Handle("GET /api/state", modelserver.StateHandler(h, read))
	mux.Handle("POST /api/mutations", h.Mutation(app.mutate))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	harness.RunNode(t, node, []string{"APP=" + srv.URL, "CENTRIFUGO=" + cf.WSURL(), "CHANNEL=" + channel},
		"--experimental-websocket", "client/models/e2e/node-client.mjs")
}
