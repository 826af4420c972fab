package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// web is the page: plain ES modules, no build step. web/vendor/centrifuge.js is the centrifuge
// npm package's ESM build, copied there by deploy/demo/npm.sh (`make demo` runs it) from the
// version pinned in deploy/demo/package-lock.json.
//
//go:embed web
var web embed.FS

// server is the app's HTTP API and page.
type server struct {
	store   *store
	cf      *centrifugo
	boardID string
	channel string // the board's Centrifugo channel, outbox:board-<id>
	log     zerolog.Logger
}

func (s *server) routes() (http.Handler, error) {
	static, err := fs.Sub(web, "web")
	if err != nil {
		return nil, err
	}
	if _, err := fs.Stat(static, "vendor/centrifuge.js"); err != nil {
		return nil, errors.New("the page's Centrifugo client is missing (cmd/demo/web/vendor/centrifuge.js): run deploy/demo/npm.sh, then build again")
	}
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/state", s.handleState)
	mux.HandleFunc("GET /api/token", s.handleToken)
	mux.HandleFunc("POST /api/mutations", s.handleMutation)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return noCache(mux), nil
}

// noCache: the page is small and changes with the binary; a stale module would be confusing.
func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// stateResponse is the bootstrap: the state, the snapshot it was read in, the stream position to
// subscribe from, and what the page needs to connect.
type stateResponse struct {
	state
	Channel    string         `json:"channel"`
	Position   streamPosition `json:"position"`
	Centrifugo string         `json:"centrifugo"` // WebSocket address
	Token      string         `json:"token"`      // connection token for user
	User       string         `json:"user"`
}

// handleState is the bootstrap recipe: (1) the channel's stream position from Centrifugo,
// then (2) the state and its snapshot in one REPEATABLE READ transaction. In this order, every
// event not visible in the snapshot comes after the position.
func (s *server) handleState(w http.ResponseWriter, r *http.Request) {
	user := userOf(r)
	pos, err := s.cf.streamTop(r.Context(), s.channel)
	if err != nil {
		s.fail(w, http.StatusBadGateway, err)
		return
	}
	st, err := s.store.readState(r.Context(), s.boardID)
	if err != nil {
		s.fail(w, http.StatusInternalServerError, err)
		return
	}
	token, err := s.cf.connectionToken(user)
	if err != nil {
		s.fail(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, stateResponse{
		state: st, Channel: s.channel, Position: pos, User: user,
		Centrifugo: s.cf.publicURL, Token: token,
	})
}

func (s *server) handleToken(w http.ResponseWriter, r *http.Request) {
	token, err := s.cf.connectionToken(userOf(r))
	if err != nil {
		s.fail(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": token})
}

// handleMutation answers the outcome too (accepted or rejected, and the transaction's xid), but
// the page confirms or rolls back on the event, which every page receives in the same order.
func (s *server) handleMutation(w http.ResponseWriter, r *http.Request) {
	var m Mutation
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		s.fail(w, http.StatusBadRequest, fmt.Errorf("bad mutation: %w", err))
		return
	}
	if err := m.check(); err != nil {
		s.fail(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	out, err := s.store.mutate(ctx, s.boardID, s.channel, m)
	if err != nil {
		s.fail(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// userOf is the page's name for itself (?user=). The demo has no login: a real app would take
// the user from its session here and sign the token for that user only.
func userOf(r *http.Request) string {
	u := r.URL.Query().Get("user")
	if u == "" || len(u) > 64 {
		return "guest"
	}
	return u
}

func (s *server) fail(w http.ResponseWriter, code int, err error) {
	if code >= 500 {
		s.log.Error().Err(err).Msg("request failed")
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
