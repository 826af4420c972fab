package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// store is the app's database: its two tables and the outbox, written in one transaction.
type store struct {
	pool   *pgxpool.Pool
	boards string // quoted table names
	tasks  string
	outbox string
}

func newStore(pool *pgxpool.Pool, prefix, outboxTable string) (*store, error) {
	schema, name, err := splitTable(outboxTable)
	if err != nil {
		return nil, err
	}
	return &store{
		pool:   pool,
		boards: pgx.Identifier{prefix + "boards"}.Sanitize(),
		tasks:  pgx.Identifier{prefix + "tasks"}.Sanitize(),
		outbox: pgx.Identifier{schema, name}.Sanitize(),
	}, nil
}

func splitTable(s string) (schema, name string, err error) {
	var ok bool
	if schema, name, ok = cutDot(s); !ok {
		schema, name = "public", s
	}
	if name == "" || schema == "" {
		return "", "", fmt.Errorf("outbox table %q: want table or schema.table", s)
	}
	return schema, name, nil
}

func cutDot(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}

// migrate creates the app's tables and the board, and adds the optimistic-update columns the
// relay reads (--mutation-id-column mutation_id, --rejected-column rejected) to the outbox
// table `pgoutbox setup` created. Safe to run twice.
func (s *store) migrate(ctx context.Context, board Board) error {
	stmts := []string{
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
			id text PRIMARY KEY,
			title text NOT NULL,
			open_limit int NOT NULL,
			task_limit int NOT NULL,
			open_tasks int NOT NULL DEFAULT 0,
			tasks int NOT NULL DEFAULT 0)`, s.boards),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
			id text PRIMARY KEY,
			board_id text NOT NULL REFERENCES %s,
			title text NOT NULL,
			done boolean NOT NULL DEFAULT false,
			version int NOT NULL DEFAULT 1,
			updated_by text NOT NULL DEFAULT '',
			seq bigserial)`, s.tasks, s.boards),
		fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS mutation_id text, ADD COLUMN IF NOT EXISTS rejected boolean`, s.outbox),
	}
	for _, q := range stmts {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("create the demo's tables: %w", err)
		}
	}
	_, err := s.pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (id, title, open_limit, task_limit) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, open_limit = EXCLUDED.open_limit, task_limit = EXCLUDED.task_limit`, s.boards),
		board.ID, board.Title, board.OpenLimit, board.TaskLimit)
	if err != nil {
		return fmt.Errorf("create board %s: %w", board.ID, err)
	}
	return nil
}

// state is what the state endpoint returns about the database: the board and its tasks, read
// in one REPEATABLE READ transaction, and the snapshot they were read in.
type state struct {
	Snapshot string `json:"snapshot"` // pg_current_snapshot(): xmin:xmax:xip,…
	Board    Board  `json:"board"`
	Tasks    []Task `json:"tasks"` // in the board's order
}

// readState is step 2 of the bootstrap recipe (README "Fan-out to browsers"): the snapshot is
// the transaction's first statement, so the state below is exactly what it shows.
func (s *store) readState(ctx context.Context, boardID string) (state, error) {
	var st state
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return st, fmt.Errorf("read state: %w", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if err := tx.QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&st.Snapshot); err != nil {
		return st, fmt.Errorf("read state: snapshot: %w", err)
	}
	if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT id, title, open_limit, task_limit, open_tasks, tasks FROM %s WHERE id = $1`, s.boards), boardID).
		Scan(&st.Board.ID, &st.Board.Title, &st.Board.OpenLimit, &st.Board.TaskLimit, &st.Board.OpenTasks, &st.Board.Tasks); err != nil {
		return st, fmt.Errorf("read state: board %s: %w", boardID, err)
	}
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT id, title, done, version, updated_by, seq FROM %s WHERE board_id = $1 ORDER BY seq`, s.tasks), boardID)
	if err != nil {
		return st, fmt.Errorf("read state: tasks: %w", err)
	}
	st.Tasks, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Task, error) {
		var t Task
		return t, r.Scan(&t.ID, &t.Title, &t.Done, &t.Version, &t.By, &t.Seq)
	})
	if err != nil {
		return st, fmt.Errorf("read state: tasks: %w", err)
	}
	return st, tx.Commit(ctx)
}

// event is the outbox row's data: what a page needs to apply the change, and the time of the
// transaction's last statement before COMMIT (for the commit→screen latency).
type event struct {
	Kind     string `json:"kind"` // task.added, task.updated, task.deleted, mutation.rejected
	Board    Board  `json:"board"`
	Task     *Task  `json:"task,omitempty"`
	TaskID   string `json:"task_id"`
	Op       string `json:"op"`
	Reason   string `json:"reason,omitempty"` // mutation.rejected
	By       string `json:"by"`
	AtMillis int64  `json:"at"` // filled in by SQL
}

// outcome is the answer to a mutation request.
type outcome struct {
	MutationID string `json:"mutation_id"`
	Rejected   bool   `json:"rejected"`
	Reason     string `json:"reason,omitempty"`
	XID        string `json:"xid"` // the transaction's full id: the page checks it against a later snapshot
}

// mutate runs one mutation in one transaction: it locks the board (the rules read its counts),
// decides, writes the business rows if accepted, and writes the outbox event either way — with
// the mutation id, and rejected = true when refused — so the page that made the change learns
// the outcome from the same stream as every other page.
func (s *store) mutate(ctx context.Context, boardID, channel string, m Mutation) (outcome, error) {
	out := outcome{MutationID: m.ID}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return out, fmt.Errorf("mutate: %w", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	var b Board
	if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT id, title, open_limit, task_limit, open_tasks, tasks FROM %s WHERE id = $1 FOR UPDATE`, s.boards), boardID).
		Scan(&b.ID, &b.Title, &b.OpenLimit, &b.TaskLimit, &b.OpenTasks, &b.Tasks); err != nil {
		return out, fmt.Errorf("mutate: lock board %s: %w", boardID, err)
	}
	var t *Task
	var cur Task
	err = tx.QueryRow(ctx, fmt.Sprintf(`SELECT id, title, done, version, updated_by, seq FROM %s WHERE id = $1 AND board_id = $2`, s.tasks), m.TaskID, boardID).
		Scan(&cur.ID, &cur.Title, &cur.Done, &cur.Version, &cur.By, &cur.Seq)
	switch {
	case err == nil:
		t = &cur
	case !errors.Is(err, pgx.ErrNoRows):
		return out, fmt.Errorf("mutate: read task: %w", err)
	}

	ev := event{Board: b, TaskID: m.TaskID, Op: m.Op, By: m.User}
	if reason := decide(m, b, t); reason != "" {
		out.Rejected, out.Reason = true, reason
		ev.Kind, ev.Reason = "mutation.rejected", reason
	} else {
		nb, nt := apply(m, b, t)
		if err := s.write(ctx, tx, m.Op, nb, nt, m.TaskID); err != nil {
			return out, err
		}
		ev.Board, ev.Task = nb, nt
		ev.Kind = map[string]string{"add": "task.added", "toggle": "task.updated", "delete": "task.deleted"}[m.Op]
		if nt != nil && m.Op == "add" {
			if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT seq FROM %s WHERE id = $1`, s.tasks), nt.ID).Scan(&nt.Seq); err != nil {
				return out, fmt.Errorf("mutate: read new task: %w", err)
			}
		}
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return out, err
	}
	var rejected any
	if out.Rejected {
		rejected = true
	}
	// The outbox row is the transaction's last statement; "at" is taken in it, as close to the
	// commit as SQL can see.
	err = tx.QueryRow(ctx, fmt.Sprintf(`INSERT INTO %s (channel, name, data, mutation_id, rejected)
		VALUES ($1, $2, jsonb_set($3::jsonb, '{at}', to_jsonb((extract(epoch FROM clock_timestamp()) * 1000)::bigint)), $4, $5)
		RETURNING pg_current_xact_id()::text`, s.outbox), channel, ev.Kind, data, m.ID, rejected).Scan(&out.XID)
	if err != nil {
		return out, fmt.Errorf("mutate: write outbox event: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return out, fmt.Errorf("mutate: commit: %w", err)
	}
	return out, nil
}

// write changes the business rows of an accepted mutation.
func (s *store) write(ctx context.Context, tx pgx.Tx, op string, b Board, t *Task, taskID string) error {
	var err error
	switch op {
	case "add":
		_, err = tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (id, board_id, title, updated_by) VALUES ($1, $2, $3, $4)`, s.tasks), t.ID, b.ID, t.Title, t.By)
	case "toggle":
		_, err = tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET done = $2, version = $3, updated_by = $4 WHERE id = $1`, s.tasks), t.ID, t.Done, t.Version, t.By)
	case "delete":
		_, err = tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE id = $1`, s.tasks), taskID)
	}
	if err != nil {
		return fmt.Errorf("mutate: write task: %w", err)
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET open_tasks = $2, tasks = $3 WHERE id = $1`, s.boards), b.ID, b.OpenTasks, b.Tasks); err != nil {
		return fmt.Errorf("mutate: write board: %w", err)
	}
	return nil
}
