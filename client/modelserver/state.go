package modelserver

import (
	"context"
	"fmt"
	"net/http"

	"github.com/jackc/pgx/v5"
)

// Beginner opens transactions: *pgxpool.Pool, *pgx.Conn and pgx.Tx are ones.
type Beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Bootstrap is where a model starts: the stream position to subscribe from, and the snapshot
// its data was read in (pg_current_snapshot() as text, "xmin:xmax:xip,…"). The SDK applies an
// event only if its transaction is not visible in the snapshot.
type Bootstrap struct {
	Position StreamPosition `json:"position"`
	Snapshot string         `json:"snapshot"`
}

// State is the answer of a state endpoint, the JSON the SDK's sync() returns: the application's
// data and the bootstrap it was read at.
type State[T any] struct {
	Data      T         `json:"data"`
	Bootstrap Bootstrap `json:"bootstrap"`
}

// ReadFunc is the application's read: it reads the channel's data in tx (REPEATABLE READ,
// read-only) and returns it as the JSON the model's merge expects. It must read the data only
// through tx.
type ReadFunc[T any] func(ctx context.Context, tx pgx.Tx, channel string) (T, error)

// ReadState builds a channel's bootstrap in the order that makes it exact: (1) the channel's
// stream position from src, then (2) one REPEATABLE READ, read-only transaction whose first
// statement is pg_current_snapshot(), then read. Every event whose transaction the snapshot does
// not show was published after the position, so a subscription from the position receives it;
// every event it does show is in the data, and the SDK drops it.
func ReadState[T any](ctx context.Context, src PositionSource, db Beginner, channel string, read ReadFunc[T]) (State[T], error) {
	var st State[T]
	pos, err := src.StreamPosition(ctx, channel)
	if err != nil {
		return st, &Error{Status: http.StatusBadGateway, Reason: "cannot read the channel's stream position from Centrifugo", Err: err}
	}
	st.Bootstrap.Position = pos
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return st, fmt.Errorf("read state of %s: begin: %w", channel, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := tx.QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&st.Bootstrap.Snapshot); err != nil {
		return st, fmt.Errorf("read state of %s: snapshot: %w", channel, err)
	}
	if st.Data, err = read(ctx, tx, channel); err != nil {
		return st, fmt.Errorf("read state of %s: %w", channel, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return st, fmt.Errorf("read state of %s: commit: %w", channel, err)
	}
	return st, nil
}
