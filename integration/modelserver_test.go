//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgoutbox/pgoutbox/client/modelserver"
)

// appSchema creates a schema of its own for an application's tables, dropped at the end.
func appSchema(t *testing.T, url string) (schema string, pool *pgxpool.Pool) {
	t.Helper()
	schema = harness.UniqueName(t)
	harness.ExecSQL(t, url, "CREATE SCHEMA "+schema)
	t.Cleanup(func() { harness.ExecSQL(t, url, "DROP SCHEMA "+schema+" CASCADE") })
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return schema, pool
}

// counterApp is a tiny application: per-channel counters, incremented by "add" mutations,
// refused past a limit.
type counterApp struct {
	schema string
	ms     *modelserver.Mutations
}

func newCounterApp(t *testing.T, url string) (*counterApp, *pgxpool.Pool) {
	t.Helper()
	schema, pool := appSchema(t, url)
	harness.ExecSQL(t, url, fmt.Sprintf(`CREATE TABLE %[1]s.outbox (sequence_id bigserial PRIMARY KEY, channel text NOT NULL, name text NOT NULL,
		data jsonb, headers jsonb, mutation_id text, rejected boolean, created_at timestamptz NOT NULL DEFAULT now());
		CREATE TABLE %[1]s.counters (channel text PRIMARY KEY, value int NOT NULL, label text NOT NULL DEFAULT '')`, schema))
	ms := &modelserver.Mutations{DB: pool, Outbox: modelserver.Outbox{Table: schema + ".outbox"}, Ledger: schema + ".mutations"}
	if err := ms.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := ms.Setup(context.Background()); err != nil { // twice: a second start changes nothing
		t.Fatalf("Setup again: %v", err)
	}
	return &counterApp{schema: schema, ms: ms}, pool
}

// mutate is the application's write: {"channel", "by", "label"}; refused above 3.
func (a *counterApp) mutate(ctx context.Context, tx pgx.Tx, m modelserver.Mutation) (modelserver.Change, error) {
	var in struct {
		Channel string `json:"channel"`
		By      int    `json:"by"`
		Label   string `json:"label"`
	}
	if err := json.Unmarshal(m.Data, &in); err != nil || in.Channel == "" {
		return modelserver.Change{}, modelserver.BadRequest("data: want {channel, by, label}")
	}
	var v int
	err := tx.QueryRow(ctx, fmt.Sprintf(`INSERT INTO %s.counters AS c (channel, value, label) VALUES ($1, $2, $3)
		ON CONFLICT (channel) DO UPDATE SET value = c.value + EXCLUDED.value, label = EXCLUDED.label RETURNING value`, a.schema),
		in.Channel, in.By, in.Label).Scan(&v)
	if err != nil {
		return modelserver.Change{}, err
	}
	ev := modelserver.Event{Channel: in.Channel, Name: "counter.changed", Data: map[string]int{"value": v}}
	if v > 3 {
		return modelserver.Change{Event: ev, Reject: "the counter stops at 3"}, nil
	}
	return modelserver.Change{Event: ev}, nil
}

func (a *counterApp) count(t *testing.T, url, sql string) int {
	t.Helper()
	var n int
	if err := harness.Connect(t, url).QueryRow(context.Background(), fmt.Sprintf(sql, a.schema)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestModelserver_MutationsIdempotent: a replayed mutation returns the first outcome and writes
// nothing; concurrent duplicates have one effect; a refusal rolls the app's writes back but
// publishes a rejected event with the reason; another user's id is a 409.
func TestModelserver_MutationsIdempotent(t *testing.T) {
	url := harness.NeedPostgres(t)
	app, _ := newCounterApp(t, url)
	ctx := context.Background()
	add := func(id, user string) (modelserver.Outcome, error) {
		return app.ms.Apply(ctx, modelserver.Mutation{ID: id, Name: "add", User: user,
			Data: json.RawMessage(`{"channel":"outbox:c1","by":1,"label":"x"}`)}, app.mutate)
	}
	first, err := add("m-1", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if first.XID == "" || first.Rejected || first.Replayed {
		t.Fatalf("first outcome %+v", first)
	}
	again, err := add("m-1", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !again.Replayed || again.XID != first.XID || again.Rejected {
		t.Errorf("replay outcome %+v, want the first one %+v", again, first)
	}
	if n := app.count(t, url, `SELECT count(*) FROM %s.outbox`); n != 1 {
		t.Errorf("%d outbox events after a replay, want 1", n)
	}
	if v := app.count(t, url, `SELECT value FROM %s.counters`); v != 1 {
		t.Errorf("counter %d after a replay, want 1", v)
	}
	var mid string
	if err := harness.Connect(t, url).QueryRow(ctx, fmt.Sprintf(`SELECT mutation_id FROM %s.outbox`, app.schema)).Scan(&mid); err != nil || mid != "m-1" {
		t.Errorf("outbox mutation_id %q (%v), want m-1", mid, err)
	}

	// The same id from another user: refused, nothing written.
	if _, err := add("m-1", "mallory"); !isStatus(err, http.StatusConflict) {
		t.Errorf("another user's replay: %v, want 409", err)
	}

	// Eight concurrent requests with one new id: one effect, one event, every answer the same.
	var wg sync.WaitGroup
	outs := make([]modelserver.Outcome, 8)
	errs := make([]error, 8)
	for i := range outs {
		wg.Add(1)
		go func() { defer wg.Done(); outs[i], errs[i] = add("m-2", "alice") }()
	}
	wg.Wait()
	replays := 0
	for i := range outs {
		if errs[i] != nil {
			t.Fatalf("concurrent duplicate %d: %v", i, errs[i])
		}
		if outs[i].XID != outs[0].XID {
			t.Errorf("concurrent duplicates answered xids %s and %s", outs[0].XID, outs[i].XID)
		}
		if outs[i].Replayed {
			replays++
		}
	}
	if replays != 7 {
		t.Errorf("%d of 8 concurrent duplicates were replays, want 7", replays)
	}
	if v := app.count(t, url, `SELECT value FROM %s.counters`); v != 2 {
		t.Errorf("counter %d after concurrent duplicates, want 2", v)
	}

	// Refusals: the counter stays at 3, each refusal is one rejected event with its reason.
	for i := 3; i <= 5; i++ {
		if _, err := add(fmt.Sprintf("m-%d", i), "alice"); err != nil {
			t.Fatal(err)
		}
	}
	out, err := add("m-5", "alice")
	if err != nil || !out.Rejected || out.Reason != "the counter stops at 3" || !out.Replayed {
		t.Errorf("replayed refusal %+v (%v)", out, err)
	}
	if v := app.count(t, url, `SELECT value FROM %s.counters`); v != 3 {
		t.Errorf("counter %d, want 3 (refused writes rolled back)", v)
	}
	if n := app.count(t, url, `SELECT count(*) FROM %s.outbox WHERE rejected AND data->>'reason' = 'the counter stops at 3'`); n != 2 {
		t.Errorf("%d rejected events with the reason, want 2 (m-4, m-5)", n)
	}
	if n := app.count(t, url, `SELECT count(*) FROM %s.outbox`); n != 5 {
		t.Errorf("%d events in all, want 5", n)
	}
	if n := app.count(t, url, `SELECT count(*) FROM %s.mutations WHERE xid IS NOT NULL`); n != 5 {
		t.Errorf("ledger rows with an outcome %d, want 5", n)
	}
}

// TestModelserver_BadInput: a NUL character is a 400 with a short reason, nothing is written,
// and an app's error surfaces as its status, never a 500 with the database's text.
func TestModelserver_BadInput(t *testing.T) {
	url := harness.NeedPostgres(t)
	app, _ := newCounterApp(t, url)
	h := &modelserver.Handlers{
		Mutations: app.ms,
		User:      func(*http.Request) (string, error) { return "alice", nil },
		OnError:   func(_ *http.Request, err error) { t.Logf("5xx: %v", err) },
	}
	srv := httptest.NewServer(h.Mutation(app.mutate))
	defer srv.Close()
	post := func(body string) (int, string) {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		b, _ := json.Marshal(out)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{"mutationId":"n1","name":"add","data":{"channel":"outbox:c","by":1,"label":"a\u0000b"}}`, 400},
		{`{"mutationId":"n2","name":"add","data":{"channel":"outbox:c","by":1,"label":"ok"}}`, 200},
		{`{"mutationId":"n3","name":"add","data":{"channel":"outbox:c","by":2147483647,"label":"x"}}`, 400}, // integer out of range
		{`{"mutationId":"n4","name":"add","data":{"by":1}}`, 400},
		{`{"mutationId":"n2","name":"add","data":{"channel":"outbox:c","by":1,"label":"ok"}}`, 200}, // a replay
	} {
		code, body := post(tc.body)
		if code != tc.status {
			t.Errorf("POST %s: %d %s, want %d", tc.body, code, body, tc.status)
		}
		if strings.Contains(body, "SQLSTATE") || strings.Contains(body, "ERROR:") {
			t.Errorf("POST %s: answer %s carries the database's text", tc.body, body)
		}
	}
	if n := app.count(t, url, `SELECT count(*) FROM %s.outbox`); n != 1 {
		t.Errorf("%d events, want 1 (only the good request)", n)
	}
	if n := app.count(t, url, `SELECT count(*) FROM %s.mutations`); n != 1 {
		t.Errorf("%d ledger rows, want 1 (a bad request records nothing)", n)
	}

	// A missing ledger says how to create it.
	ms := &modelserver.Mutations{DB: app.ms.DB, Outbox: app.ms.Outbox, Ledger: app.schema + ".nope"}
	_, err := ms.Apply(context.Background(), modelserver.Mutation{ID: "z", Name: "add", Data: json.RawMessage(`{}`)}, app.mutate)
	if err == nil || !strings.Contains(err.Error(), "Mutations.Setup") {
		t.Errorf("missing ledger: %v, want advice naming Mutations.Setup", err)
	}
}

func isStatus(err error, status int) bool {
	var e *modelserver.Error
	return errors.As(err, &e) && e.Status == status
}
