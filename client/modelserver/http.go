package modelserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// UserFunc is the application's authentication: it returns the user making the request (from
// its session cookie, its bearer token…), or an error: an [*Error], or anything else for 401.
type UserFunc func(r *http.Request) (string, error)

// AuthorizeFunc is the application's authorization: nil if user may read channel (its events
// and its state), else an error: an [*Error], or anything else for 403. It runs before every
// subscription token and every state read.
type AuthorizeFunc func(r *http.Request, user, channel string) error

// Handlers are the four endpoints a page's models need; each is an http.Handler for the
// application's mux:
//
//	GET  …/token                          {token}                connection token for the user
//	GET  …/subscription-token?channel=C   {token}                after Authorize(user, C)
//	GET  …/state?channel=C                {data, bootstrap}      after Authorize(user, C); StateHandler
//	POST …/mutations  {mutationId, name, data}  →  {xid, rejected?, reason?}   Mutation
//
// Errors are answered as {"error": reason} with their status ([Error]); a 5xx's cause goes to
// OnError, never to the page.
type Handlers struct {
	Centrifugo PositionSource // the channels' stream positions (a *Centrifugo)
	Tokens     *Tokens        // signs the tokens
	DB         Beginner       // reads the state
	Mutations  *Mutations     // applies mutations (Mutation only)
	User       UserFunc       // required
	Authorize  AuthorizeFunc  // required for SubscriptionToken and StateHandler
	// OnError receives the cause of every 5xx answer; default: the standard logger.
	OnError func(r *http.Request, err error)
	// Timeout bounds each request's database and Centrifugo calls; default 10 s.
	Timeout time.Duration
}

// Token answers {"token": connection token} for the requesting user.
func (h *Handlers) Token() http.Handler {
	return h.handle(func(r *http.Request) (any, error) {
		user, err := h.user(r)
		if err != nil {
			return nil, err
		}
		tok, err := h.Tokens.Connection(user)
		return map[string]string{"token": tok}, err
	})
}

// SubscriptionToken answers {"token": subscription token} for ?channel=, if Authorize allows it.
func (h *Handlers) SubscriptionToken() http.Handler {
	return h.handle(func(r *http.Request) (any, error) {
		user, channel, err := h.authorized(r)
		if err != nil {
			return nil, err
		}
		tok, err := h.Tokens.Subscription(user, channel)
		return map[string]string{"token": tok}, err
	})
}

// StateHandler answers the bootstrap of ?channel= with read's data ([ReadState]), if h.Authorize
// allows it. (A function, not a method of Handlers, because Go methods cannot take type
// parameters.)
func StateHandler[T any](h *Handlers, read ReadFunc[T]) http.Handler {
	return h.handle(func(r *http.Request) (any, error) {
		_, channel, err := h.authorized(r)
		if err != nil {
			return nil, err
		}
		return ReadState(r.Context(), h.Centrifugo, h.DB, channel, read)
	})
}

// maxMutationBytes bounds a mutation request's body.
const maxMutationBytes = 64 << 10

// Mutation answers a POSTed {mutationId, name, data} with its [Outcome], applied by
// h.Mutations with mutate.
func (h *Handlers) Mutation(mutate MutateFunc) http.Handler {
	return h.handle(func(r *http.Request) (any, error) {
		user, err := h.user(r)
		if err != nil {
			return nil, err
		}
		m, err := readMutation(r)
		if err != nil {
			return nil, err
		}
		m.User = user
		return h.Mutations.Apply(r.Context(), m, mutate)
	})
}

// readMutation decodes a mutation request and refuses what the database could not store.
func readMutation(r *http.Request) (Mutation, error) {
	var m Mutation
	body, err := readAll(r, maxMutationBytes)
	if err != nil {
		return m, err
	}
	// JSON may spell a NUL character as \u0000, which no PostgreSQL text or jsonb value holds.
	if bytes.Contains(bytes.ToLower(body), []byte(`\u0000`)) || bytes.IndexByte(body, 0) >= 0 {
		return m, BadRequest("a text holds a NUL character (\\u0000), which PostgreSQL cannot store")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, BadRequest("want a JSON object {mutationId, name, data}: " + err.Error())
	}
	if err := CheckID(m.ID); err != nil {
		return m, err
	}
	if m.Name == "" || len(m.Name) > 128 || !utf8.ValidString(m.Name) {
		return m, BadRequest("name: want 1 to 128 characters")
	}
	return m, nil
}

func readAll(r *http.Request, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, Errorf(http.StatusRequestEntityTooLarge, "request body over %d bytes", limit)
		}
		return nil, BadRequest("cannot read the request body")
	}
	if n == 0 {
		return nil, BadRequest("empty request body: want a JSON object")
	}
	return buf.Bytes(), nil
}

func (h *Handlers) user(r *http.Request) (string, error) {
	if h.User == nil {
		return "", errors.New("modelserver: Handlers.User is not set")
	}
	user, err := h.User(r)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return "", e
		}
		return "", &Error{Status: http.StatusUnauthorized, Reason: "log in first", Err: err}
	}
	if user == "" {
		return "", &Error{Status: http.StatusUnauthorized, Reason: "log in first"}
	}
	return user, nil
}

// authorized returns the user and ?channel= if the user may read the channel.
func (h *Handlers) authorized(r *http.Request) (user, channel string, err error) {
	if user, err = h.user(r); err != nil {
		return "", "", err
	}
	channel = r.URL.Query().Get("channel")
	if channel == "" || len(channel) > 255 || strings.ContainsAny(channel, ",\x00") || !utf8.ValidString(channel) {
		return "", "", BadRequest("channel: want ?channel= with 1 to 255 characters, no comma")
	}
	if h.Authorize == nil {
		return "", "", errors.New("modelserver: Handlers.Authorize is not set")
	}
	if err := h.Authorize(r, user, channel); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return "", "", e
		}
		return "", "", &Error{Status: http.StatusForbidden, Reason: "you may not read " + channel, Err: err}
	}
	return user, channel, nil
}

// handle runs fn with the request's timeout and answers its result as JSON, or its error.
func (h *Handlers) handle(fn func(r *http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), ttl(h.Timeout, 10*time.Second))
		defer cancel()
		v, err := fn(r.WithContext(ctx))
		if err != nil {
			e := classify(err)
			if e.Status >= 500 {
				h.logError(r, err)
			}
			WriteJSON(w, e.Status, map[string]string{"error": e.Reason})
			return
		}
		WriteJSON(w, http.StatusOK, v)
	})
}

func (h *Handlers) logError(r *http.Request, err error) {
	if h.OnError != nil {
		h.OnError(r, err)
		return
	}
	log.Printf("modelserver: %q %q: %v", r.Method, r.URL.Path, err) // #nosec G706 -- quoted: a request cannot forge a log line
}

// WriteJSON answers v as JSON with status code; responses are never cached.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
