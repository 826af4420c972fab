package modelserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// pgError is a stand-in for pgconn.PgError: classify reads only SQLState.
type pgError struct{ code string }

func (e pgError) Error() string    { return "ERROR: raw database text (SQLSTATE " + e.code + ")" }
func (e pgError) SQLState() string { return e.code }

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err    error
		status int
	}{
		{BadRequest("x"), 400},
		{fmt.Errorf("write: %w", pgError{"22021"}), 400},
		{fmt.Errorf("write: %w", pgError{"22P05"}), 400},
		{pgError{"22001"}, 400},
		{pgError{"23505"}, 409},
		{pgError{"23503"}, 409},
		{pgError{"40001"}, 503},
		{pgError{"XX000"}, 500},
		{context.DeadlineExceeded, 503},
		{errors.New("boom"), 500},
	} {
		e := classify(tc.err)
		if e.Status != tc.status {
			t.Errorf("classify(%v) = %d, want %d", tc.err, e.Status, tc.status)
		}
		if strings.Contains(e.Reason, "raw database text") || strings.Contains(e.Reason, "SQLSTATE") {
			t.Errorf("classify(%v): reason %q carries the database's text", tc.err, e.Reason)
		}
	}
}

func TestReadMutation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body   string
		status int // 0: accepted
	}{
		{`{"mutationId":"m1","name":"add","data":{"title":"hi"}}`, 0},
		{`{"mutationId":"m1","name":"add","data":{"title":"a\u0000b"}}`, 400},
		{`{"mutationId":"m1","name":"add","data":{"title":"a\U0000b"}}`, 400},
		{"{\"mutationId\":\"m1\",\"name\":\"add\",\"data\":\"\x00\"}", 400},
		{`{"mutationId":"","name":"add"}`, 400},
		{`{"mutationId":"m1","name":""}`, 400},
		{`{"mutationId":"m1","name":"add","extra":1}`, 400},
		{`not json`, 400},
		{``, 400},
		{`{"mutationId":"m1","name":"add","data":"` + strings.Repeat("x", maxMutationBytes) + `"}`, 413},
	} {
		r := httptest.NewRequest(http.MethodPost, "/api/mutations", strings.NewReader(tc.body))
		_, err := readMutation(r)
		got := 0
		if err != nil {
			got = classify(err).Status
		}
		if got != tc.status {
			t.Errorf("readMutation(%.60q) = %d (%v), want %d", tc.body, got, err, tc.status)
		}
	}
}

func TestHandlers_SubscriptionToken(t *testing.T) {
	t.Parallel()
	tk, _ := NewHS256Tokens([]byte("k"))
	h := &Handlers{
		Tokens: tk,
		User: func(r *http.Request) (string, error) {
			if u := r.Header.Get("X-User"); u != "" {
				return u, nil
			}
			return "", errors.New("no session")
		},
		Authorize: func(_ *http.Request, user, channel string) error {
			if channel != "outbox:user-"+user {
				return errors.New("not yours")
			}
			return nil
		},
	}
	for _, tc := range []struct {
		user, channel string
		status        int
	}{
		{"alice", "outbox:user-alice", 200},
		{"mallory", "outbox:user-alice", 403},
		{"", "outbox:user-alice", 401},
		{"alice", "", 400},
		{"alice", "a,b", 400},
	} {
		r := httptest.NewRequest(http.MethodGet, "/api/subscription-token?channel="+tc.channel, nil)
		if tc.user != "" {
			r.Header.Set("X-User", tc.user)
		}
		w := httptest.NewRecorder()
		h.SubscriptionToken().ServeHTTP(w, r)
		if w.Code != tc.status {
			t.Errorf("%s asks for %q: %d %s, want %d", tc.user, tc.channel, w.Code, w.Body, tc.status)
			continue
		}
		var body map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if tc.status == 200 {
			if _, c, _, _ := parseJWT(t, body["token"]); c["sub"] != tc.user || c["channel"] != tc.channel {
				t.Errorf("token claims %v", c)
			}
		} else if body["error"] == "" || body["token"] != "" {
			t.Errorf("refusal body %v: want an error and no token", body)
		}
	}
}
