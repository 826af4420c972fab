package main

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// The demo's business: a shared board of tasks. Its state spans two tables, the board (title,
// limits, a count of open tasks) and its tasks, and each change is one outbox event chosen by the
// app — the task's new row and the board's new count — not a row image.

// Board is one board's row.
type Board struct {
	ID        string `json:"id"`
	Title     string `json:"title"`
	OpenLimit int    `json:"open_limit"` // at most this many tasks not done
	TaskLimit int    `json:"task_limit"` // at most this many tasks in all
	OpenTasks int    `json:"open_tasks"` // tasks not done, kept by every mutation
	Tasks     int    `json:"tasks"`      // tasks in all
}

// Task is one task's row.
type Task struct {
	ID      string `json:"id"`
	Title   string `json:"title"`
	Done    bool   `json:"done"`
	Version int    `json:"version"` // 1 when added, +1 per change
	By      string `json:"by"`      // who changed it last
	Seq     int64  `json:"seq"`     // the board's order: when it was added
}

// Mutation is one request of a page: what to change, and the page's own id for it (the
// optimistic update it confirms or rolls back).
type Mutation struct {
	ID     string `json:"mutation_id"`
	Op     string `json:"op"` // add, toggle or delete
	TaskID string `json:"task_id"`
	Title  string `json:"title,omitempty"` // add
	Done   bool   `json:"done,omitempty"`  // toggle: the new value
	User   string `json:"user"`
}

const maxTitle = 80

// check reports what is wrong with a malformed request (answered 400, no event): these are the
// page's bugs, not the business's refusals.
func (m Mutation) check() error {
	var problems []string
	if m.ID == "" || len(m.ID) > 64 {
		problems = append(problems, "mutation_id: want 1 to 64 characters")
	}
	if m.TaskID == "" || len(m.TaskID) > 64 {
		problems = append(problems, "task_id: want 1 to 64 characters")
	}
	if len(m.User) > 64 {
		problems = append(problems, "user: want at most 64 characters")
	}
	switch m.Op {
	case "add":
		if t := strings.TrimSpace(m.Title); t == "" || utf8.RuneCountInString(t) > maxTitle {
			problems = append(problems, fmt.Sprintf("title: want 1 to %d characters", maxTitle))
		}
	case "toggle", "delete":
	default:
		problems = append(problems, fmt.Sprintf("op %q: want add, toggle or delete", m.Op))
	}
	if len(problems) > 0 {
		return fmt.Errorf("bad mutation: %s", strings.Join(problems, "; "))
	}
	return nil
}

// decide applies the board's rules to a well-formed mutation, given the board and the task it
// names (nil if there is none): it returns the reason for refusing it, or "" to accept it. These
// refusals are real outcomes of concurrent editing, which a page cannot foresee: another page
// filled the board, or deleted the task, a moment earlier.
func decide(m Mutation, b Board, t *Task) string {
	switch m.Op {
	case "add":
		switch {
		case t != nil:
			return "a task with this id exists"
		case b.Tasks >= b.TaskLimit:
			return fmt.Sprintf("the board holds at most %d tasks: delete one first", b.TaskLimit)
		case b.OpenTasks >= b.OpenLimit:
			return fmt.Sprintf("the board allows at most %d open tasks: finish one first", b.OpenLimit)
		}
	case "toggle":
		switch {
		case t == nil:
			return "someone deleted this task"
		case t.Done && !m.Done && b.OpenTasks >= b.OpenLimit:
			return fmt.Sprintf("the board allows at most %d open tasks: finish one first", b.OpenLimit)
		}
	case "delete":
		if t == nil {
			return "someone deleted this task already"
		}
	}
	return ""
}

// apply returns the board and task after an accepted mutation (task nil: deleted).
func apply(m Mutation, b Board, t *Task) (Board, *Task) {
	switch m.Op {
	case "add":
		b.Tasks++
		b.OpenTasks++
		return b, &Task{ID: m.TaskID, Title: strings.TrimSpace(m.Title), Version: 1, By: m.User}
	case "toggle":
		n := *t
		if n.Done != m.Done {
			if m.Done {
				b.OpenTasks--
			} else {
				b.OpenTasks++
			}
		}
		n.Done, n.Version, n.By = m.Done, n.Version+1, m.User
		return b, &n
	default: // delete
		b.Tasks--
		if !t.Done {
			b.OpenTasks--
		}
		return b, nil
	}
}
