// Command livelist is the server of docs/build-a-live-model.md: a shared list whose page stays
// live. Its data is one table; every change writes the row and its outbox event in one
// transaction (client/modelserver), pgoutbox relays the event, Centrifugo pushes it to pages.
//
// It reads DATABASE_URL, CENTRIFUGO_URL, CENTRIFUGO_HTTP_API_KEY,
// CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY, APP_PASSWORD and ADDR (default 127.0.0.1:8090).
package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log"
	"net/http"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgoutbox/pgoutbox/client/modelserver"
)

const channel = "outbox:items" // one list, one channel

// Item is one row of the list, and the data of its event.
type Item struct {
	ID    string `json:"id"`
	Title string `json:"title"`
}

func main() {
	ctx := context.Background()
	db, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	check(err)
	_, err = db.Exec(ctx, `CREATE TABLE IF NOT EXISTS items (id text PRIMARY KEY, title text NOT NULL, added bigserial)`)
	check(err)
	// Events go through pgoutbox_send(), which `pgoutbox setup` installed next to the outbox.
	mutations := &modelserver.Mutations{DB: db, Outbox: modelserver.Outbox{Send: "pgoutbox_send"}}
	check(mutations.Setup(ctx)) // the mutation ledger: replays answer the first outcome
	tokens, err := modelserver.NewHS256Tokens([]byte(os.Getenv("CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY")))
	check(err)
	h := &modelserver.Handlers{
		Centrifugo: &modelserver.Centrifugo{URL: os.Getenv("CENTRIFUGO_URL"), APIKey: os.Getenv("CENTRIFUGO_HTTP_API_KEY")},
		Tokens:     tokens, DB: db, Mutations: mutations,
		User: user,
		Authorize: func(_ *http.Request, _, ch string) error { // every user may read the list
			if ch != channel {
				return modelserver.Forbidden("no such list")
			}
			return nil
		},
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/token", h.Token())
	mux.Handle("GET /api/subscription-token", h.SubscriptionToken())
	mux.Handle("GET /api/state", modelserver.StateHandler(h, readItems))
	mux.Handle("POST /api/mutations", h.Mutation(addItem))
	log.Fatal(http.ListenAndServe(or(os.Getenv("ADDR"), "127.0.0.1:8090"), mux)) // #nosec G114 -- an example
}

// readItems is the state: every item, in the order added (read in the bootstrap's snapshot).
func readItems(ctx context.Context, tx pgx.Tx, _ string) ([]Item, error) {
	rows, _ := tx.Query(ctx, `SELECT id, title FROM items ORDER BY added`)
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Item])
}

// addItem is the one mutation: "add" {id, title}. A title over 80 characters is refused.
func addItem(ctx context.Context, tx pgx.Tx, m modelserver.Mutation) (modelserver.Change, error) {
	var it Item
	if m.Name != "add" || json.Unmarshal(m.Data, &it) != nil || it.ID == "" || strings.TrimSpace(it.Title) == "" {
		return modelserver.Change{}, modelserver.BadRequest(`want name "add", data {id, title}`)
	}
	ev := modelserver.Event{Channel: channel, Name: "item.added", Data: it}
	if len(it.Title) > 80 {
		return modelserver.Change{Event: ev, Reject: "a title has at most 80 characters"}, nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO items (id, title) VALUES ($1, $2)`, it.ID, it.Title)
	return modelserver.Change{Event: ev}, err
}

// user is a stand-in for the app's own login: HTTP basic auth, any name, one shared password.
func user(r *http.Request) (string, error) {
	name, pass, ok := r.BasicAuth()
	if !ok || name == "" || os.Getenv("APP_PASSWORD") == "" || subtle.ConstantTimeCompare([]byte(pass), []byte(os.Getenv("APP_PASSWORD"))) != 1 {
		return "", errors.New("wrong name or password")
	}
	return name, nil
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}
