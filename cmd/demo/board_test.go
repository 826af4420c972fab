package main

import (
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	b := Board{OpenLimit: 2, TaskLimit: 3, OpenTasks: 1, Tasks: 2}
	full := Board{OpenLimit: 2, TaskLimit: 3, OpenTasks: 2, Tasks: 2}
	done := &Task{ID: "t", Done: true}
	open := &Task{ID: "t"}
	for _, tc := range []struct {
		name string
		m    Mutation
		b    Board
		t    *Task
		want string // "" = accepted; else a substring of the reason
	}{
		{"add", Mutation{Op: "add", Title: "x"}, b, nil, ""},
		{"add with a taken id", Mutation{Op: "add", Title: "x"}, b, open, "exists"},
		{"add to a board at its open limit", Mutation{Op: "add", Title: "x"}, full, nil, "at most 2 open tasks"},
		{"add to a board at its task limit", Mutation{Op: "add", Title: "x"}, Board{OpenLimit: 9, TaskLimit: 2, Tasks: 2}, nil, "at most 2 tasks"},
		{"finish", Mutation{Op: "toggle", Done: true}, full, open, ""},
		{"reopen", Mutation{Op: "toggle"}, b, done, ""},
		{"reopen on a full board", Mutation{Op: "toggle"}, full, done, "at most 2 open tasks"},
		{"toggle a deleted task", Mutation{Op: "toggle", Done: true}, b, nil, "deleted"},
		{"delete", Mutation{Op: "delete"}, b, open, ""},
		{"delete a deleted task", Mutation{Op: "delete"}, b, nil, "deleted"},
	} {
		got := decide(tc.m, tc.b, tc.t)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: decide = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestApply_KeepsTheBoardsCounts(t *testing.T) {
	t.Parallel()
	b := Board{OpenLimit: 5, TaskLimit: 5}
	b, t1 := apply(Mutation{Op: "add", TaskID: "a", Title: " a ", User: "u"}, b, nil)
	if b.OpenTasks != 1 || b.Tasks != 1 || t1.Title != "a" || t1.Version != 1 {
		t.Fatalf("after add: %+v %+v", b, t1)
	}
	b, t2 := apply(Mutation{Op: "toggle", TaskID: "a", Done: true}, b, t1)
	if b.OpenTasks != 0 || !t2.Done || t2.Version != 2 {
		t.Fatalf("after finish: %+v %+v", b, t2)
	}
	b, _ = apply(Mutation{Op: "toggle", TaskID: "a", Done: true}, b, t2)
	if b.OpenTasks != 0 {
		t.Fatalf("finishing a done task changed the count: %+v", b)
	}
	b, t3 := apply(Mutation{Op: "delete", TaskID: "a"}, b, t2)
	if b.OpenTasks != 0 || b.Tasks != 0 || t3 != nil {
		t.Fatalf("after delete: %+v %+v", b, t3)
	}
}

func TestMutation_Check(t *testing.T) {
	t.Parallel()
	if err := (Mutation{ID: "m", Op: "add", TaskID: "t", Title: "x"}).check(); err != nil {
		t.Errorf("good add: %v", err)
	}
	err := (Mutation{Op: "rename", Title: strings.Repeat("x", 100)}).check()
	for _, want := range []string{"mutation_id", "task_id", `op "rename"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("check = %v, want it to name %s", err, want)
		}
	}
	if err := (Mutation{ID: "m", Op: "add", TaskID: "t", Title: "  "}).check(); err == nil || !strings.Contains(err.Error(), "title") {
		t.Errorf("blank title: %v", err)
	}
}

// TestWSURL: the page's WebSocket address from Centrifugo's HTTP address.
func TestWSURL(t *testing.T) {
	t.Parallel()
	if got := wsURL("http://127.0.0.1:58000/"); got != "ws://127.0.0.1:58000/connection/websocket" {
		t.Errorf("wsURL = %s", got)
	}
}
