package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgoutbox/pgoutbox/client/modelserver"
)

// store is the app's database: its two tables and the outbox, written in one transaction.
type store struct {
	pool      *pgxpool.Pool
	boards    string // quoted table names
	tasks     string
	outbox    string
	mutations *modelserver.Mutations // writes the events; its ledger makes mutations idempotent
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
		mutations: &modelserver.Mutations{
			DB: pool, Outbox: modelserver.Outbox{Table: schema + "." + name},
			Ledger: schema + "." + prefix + "mutations",
		},
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

// migrate creates the app's tables, the board and the mutation ledger, and adds the optimistic-update columns the
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
	return s.mutations.Setup(ctx)
}

// readBoard reads the board and its tasks in tx, the state endpoint's transaction
// (modelserver.ReadState opened it and took its snapshot first).
func (s *store) readBoard(ctx context.Context, tx pgx.Tx, boardID string) (Board, []Task, error) {
	var b Board
	if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT id, title, open_limit, task_limit, open_tasks, tasks FROM %s WHERE id = $1`, s.boards), boardID).
		Scan(&b.ID, &b.Title, &b.OpenLimit, &b.TaskLimit, &b.OpenTasks, &b.Tasks); err != nil {
		return b, nil, fmt.Errorf("read board %s: %w", boardID, err)
	}
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT id, title, done, version, updated_by, seq FROM %s WHERE board_id = $1 ORDER BY seq`, s.tasks), boardID)
	if err != nil {
		return b, nil, fmt.Errorf("read tasks: %w", err)
	}
	tasks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Task, error) {
		var t Task
		return t, r.Scan(&t.ID, &t.Title, &t.Done, &t.Version, &t.By, &t.Seq)
	})
	if err != nil {
		return b, nil, fmt.Errorf("read tasks: %w", err)
	}
	if tasks == nil {
		tasks = []Task{}
	}
	return b, tasks, nil
}

// event is the outbox row's data: what a page needs to apply the change, and the time the app
// decided it (for the commit→screen latency).
type event struct {
	Kind     string `json:"kind"` // task.added, task.updated, task.deleted
	Board    Board  `json:"board"`
	Task     *Task  `json:"task,omitempty"`
	TaskID   string `json:"task_id"`
	Op       string `json:"op"`
	By       string `json:"by"`
	AtMillis int64  `json:"at"`
}

// mutate runs one well-formed mutation in tx (modelserver.Mutations opened it, and writes the
// event after): it locks the board (the rules read its counts), decides, and writes the business
// rows if accepted. It returns the event, or the reason the board's rules refuse the change.
func (s *store) mutate(ctx context.Context, tx pgx.Tx, boardID string, m Mutation) (event, string, error) {
	var b Board
	if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT id, title, open_limit, task_limit, open_tasks, tasks FROM %s WHERE id = $1 FOR UPDATE`, s.boards), boardID).
		Scan(&b.ID, &b.Title, &b.OpenLimit, &b.TaskLimit, &b.OpenTasks, &b.Tasks); err != nil {
		return event{}, "", fmt.Errorf("mutate: lock board %s: %w", boardID, err)
	}
	var t *Task
	var cur Task
	err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT id, title, done, version, updated_by, seq FROM %s WHERE id = $1 AND board_id = $2`, s.tasks), m.TaskID, boardID).
		Scan(&cur.ID, &cur.Title, &cur.Done, &cur.Version, &cur.By, &cur.Seq)
	switch {
	case err == nil:
		t = &cur
	case !errors.Is(err, pgx.ErrNoRows):
		return event{}, "", fmt.Errorf("mutate: read task: %w", err)
	}
	ev := event{Board: b, TaskID: m.TaskID, Op: m.Op, By: m.User}
	if reason := decide(m, b, t); reason != "" {
		return ev, reason, nil
	}
	nb, nt := apply(m, b, t)
	if err := s.write(ctx, tx, m.Op, nb, nt, m.TaskID); err != nil {
		return event{}, "", err
	}
	ev.Board, ev.Task = nb, nt
	ev.Kind = map[string]string{"add": "task.added", "toggle": "task.updated", "delete": "task.deleted"}[m.Op]
	if nt != nil && m.Op == "add" {
		if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT seq FROM %s WHERE id = $1`, s.tasks), nt.ID).Scan(&nt.Seq); err != nil {
			return event{}, "", fmt.Errorf("mutate: read new task: %w", err)
		}
	}
	return ev, "", nil
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
