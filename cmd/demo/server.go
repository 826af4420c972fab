package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgoutbox/pgoutbox/client/modelserver"
	"github.com/rs/zerolog"
)

// web is the page: plain ES modules on @pgoutbox/models. web/vendor/ holds the package's build
// (client/models/dist) and the centrifuge ESM build it pins, copied there by deploy/demo/npm.sh
// (`make demo` and the browser tests run it).
//
//go:embed web
var web embed.FS

// server is the app's HTTP API and page, built on client/modelserver: the app supplies who the
// user is (a demo login), who may read which channel, how to read a board and how to apply a
// change; modelserver does the bootstrap, the idempotent mutations and the tokens.
type server struct {
	store      *store
	cf         *centrifugo
	boardID    string
	channel    string // the board's Centrifugo channel, outbox:board-<id>
	sessionKey []byte // signs the demo's session cookie
	log        zerolog.Logger
}

func (s *server) routes() (http.Handler, error) {
	static, err := fs.Sub(web, "web")
	if err != nil {
		return nil, err
	}
	for _, f := range []string{"vendor/centrifuge.js", "vendor/models/index.js"} {
		if _, err := fs.Stat(static, f); err != nil {
			return nil, errors.New("the page's packages are missing (cmd/demo/web/" + f + "): run deploy/demo/npm.sh, then build again")
		}
	}
	h := &modelserver.Handlers{
		Centrifugo: s.cf.api, Tokens: s.cf.tokens, DB: s.store.pool, Mutations: s.store.mutations,
		User: s.user, Authorize: s.authorize,
		OnError: func(r *http.Request, err error) {
			s.log.Error().Err(err).Str("path", r.URL.Path).Msg("request failed")
		},
	}
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("POST /api/login", s.handleLogin)
	mux.HandleFunc("GET /api/config", s.handleConfig)
	mux.Handle("GET /api/token", h.Token())
	mux.Handle("GET /api/subscription-token", h.SubscriptionToken())
	mux.Handle("GET /api/state", modelserver.StateHandler(h, s.readBoard))
	mux.Handle("POST /api/mutations", h.Mutation(s.mutate))
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

// The demo's login: any name, no password — a stand-in for the app's real sign-in. What it
// must show is the rest: the session cookie, not a query parameter, says who the user is, and
// every token is signed for that user only after the channel check.
const sessionCookie = "demo_session"

var userName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

func (s *server) handleLogin(w http.ResponseWriter, r *http.Request) {
	var in struct {
		User string `json:"user"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024)).Decode(&in); err != nil || !userName.MatchString(in.User) {
		modelserver.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "user: want 1 to 32 of a-z, 0-9, _ and -, starting with a letter or digit"})
		return
	}
	// Secure when served over TLS; the demo runs on http://127.0.0.1, where a Secure cookie
	// would not be sent back.
	http.SetCookie(w, &http.Cookie{ // #nosec G124 -- Secure follows the request's scheme
		Name: sessionCookie, Value: in.User + "." + s.sign(in.User), Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: int((24 * time.Hour).Seconds()), Secure: r.TLS != nil,
	})
	modelserver.WriteJSON(w, http.StatusOK, map[string]string{"user": in.User})
}

func (s *server) sign(user string) string {
	mac := hmac.New(sha256.New, s.sessionKey)
	mac.Write([]byte("demo-session:" + user))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// user is the app's authentication (modelserver.UserFunc): the session cookie's user.
func (s *server) user(r *http.Request) (string, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", errors.New("no session cookie")
	}
	user, sig, ok := strings.Cut(c.Value, ".")
	if !ok || !userName.MatchString(user) || !hmac.Equal([]byte(sig), []byte(s.sign(user))) {
		return "", errors.New("bad session cookie")
	}
	return user, nil
}

// authorize is the app's channel check (modelserver.AuthorizeFunc): every signed-in user is a
// member of the demo's one board; outbox:user-<name> is name's own channel and no one else's;
// no other channel is readable.
func (s *server) authorize(_ *http.Request, user, channel string) error {
	if channel == s.channel || channel == "outbox:user-"+user {
		return nil
	}
	return modelserver.Forbidden("you may not read " + channel)
}

// handleConfig tells the page where to connect and which channel is the board.
func (s *server) handleConfig(w http.ResponseWriter, r *http.Request) {
	user, err := s.user(r)
	if err != nil {
		modelserver.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "log in first (POST /api/login)"})
		return
	}
	modelserver.WriteJSON(w, http.StatusOK, map[string]string{"centrifugo": s.cf.publicURL, "channel": s.channel, "user": user})
}

// boardState is the state endpoint's data: the board and its tasks in the board's order.
type boardState struct {
	Board Board  `json:"board"`
	Tasks []Task `json:"tasks"`
}

// readBoard is the app's read (modelserver.ReadFunc): the board of the channel and its tasks.
func (s *server) readBoard(ctx context.Context, tx pgx.Tx, channel string) (boardState, error) {
	if channel != s.channel {
		return boardState{}, modelserver.Errorf(http.StatusNotFound, "no board on channel %s", channel)
	}
	b, tasks, err := s.store.readBoard(ctx, tx, s.boardID)
	return boardState{Board: b, Tasks: tasks}, err
}

// mutate is the app's write (modelserver.MutateFunc): add, toggle or delete a task. A change
// the board's rules refuse is a rejection with the reason, which modelserver publishes as a
// rejected event; a malformed request is a 400.
func (s *server) mutate(ctx context.Context, tx pgx.Tx, m modelserver.Mutation) (modelserver.Change, error) {
	req := Mutation{ID: m.ID, Op: m.Name, User: m.User}
	var data struct {
		TaskID string `json:"task_id"`
		Title  string `json:"title"`
		Done   bool   `json:"done"`
	}
	if len(m.Data) > 0 {
		if err := json.Unmarshal(m.Data, &data); err != nil {
			return modelserver.Change{}, modelserver.BadRequest("data: want {task_id, title?, done?}")
		}
	}
	req.TaskID, req.Title, req.Done = data.TaskID, data.Title, data.Done
	if err := req.check(); err != nil {
		return modelserver.Change{}, modelserver.BadRequest(err.Error())
	}
	ev, reason, err := s.store.mutate(ctx, tx, s.boardID, req)
	if err != nil {
		return modelserver.Change{}, err
	}
	ev.AtMillis = time.Now().UnixMilli()
	return modelserver.Change{
		Event:  modelserver.Event{Channel: s.channel, Name: ev.Kind, Data: ev},
		Reject: reason,
	}, nil
}
