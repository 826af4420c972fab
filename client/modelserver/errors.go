package modelserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Error is an error with the HTTP status and the short reason a handler answers. The reason is
// shown to the user; Err, when set, is the cause, logged for a 5xx and never sent.
type Error struct {
	Status int    // an HTTP status, 4xx or 5xx
	Reason string // what is wrong and, where it helps, what to do; sent as {"error": reason}
	Err    error  // the cause (optional)
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Status, e.Reason, e.Err)
	}
	return fmt.Sprintf("%d %s", e.Status, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an [*Error] with status and a reason formatted as by fmt.Sprintf.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Reason: fmt.Sprintf(format, args...)}
}

// BadRequest returns a 400 [*Error]: the request is malformed or its values cannot be stored.
func BadRequest(reason string) *Error { return &Error{Status: http.StatusBadRequest, Reason: reason} }

// Forbidden returns a 403 [*Error]: the user may not do this.
func Forbidden(reason string) *Error { return &Error{Status: http.StatusForbidden, Reason: reason} }

// sqlStater is what a PostgreSQL error answers (pgconn.PgError); checked by method so that this
// package needs no driver internals.
type sqlStater interface{ SQLState() string }

// classify turns err into the [*Error] a handler answers: an *Error as it is; a PostgreSQL data
// exception (class 22: a NUL byte, a value too long or out of range) as 400 and an integrity
// violation (class 23) as 409, each with a short reason and not the database's text; a
// serialization failure or deadlock as 503 (try again); a canceled request as 499-like 503;
// anything else as 500 "internal error".
func classify(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var pg sqlStater
	if errors.As(err, &pg) {
		code := pg.SQLState()
		switch {
		case code == "22021" || code == "22P05":
			return &Error{Status: http.StatusBadRequest, Reason: "a text holds a NUL character (\\u0000), which PostgreSQL cannot store", Err: err}
		case code == "22001":
			return &Error{Status: http.StatusBadRequest, Reason: "a value is longer than its column allows", Err: err}
		case code == "22003":
			return &Error{Status: http.StatusBadRequest, Reason: "a number is out of range", Err: err}
		case strings.HasPrefix(code, "22"):
			return &Error{Status: http.StatusBadRequest, Reason: "a value is malformed or out of range", Err: err}
		case code == "23505":
			return &Error{Status: http.StatusConflict, Reason: "conflicts with an existing row", Err: err}
		case strings.HasPrefix(code, "23"):
			return &Error{Status: http.StatusConflict, Reason: "breaks a rule of the data (a constraint)", Err: err}
		case code == "40001" || code == "40P01":
			return &Error{Status: http.StatusServiceUnavailable, Reason: "a concurrent change got in the way: try again", Err: err}
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &Error{Status: http.StatusServiceUnavailable, Reason: "the request was canceled or timed out: try again", Err: err}
	}
	return &Error{Status: http.StatusInternalServerError, Reason: "internal error", Err: err}
}
