package harness

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgoutbox/pgoutbox/checkpoint"
)

// ReadCounter is the second step of docs/fan-out.md's bootstrap recipe, for the tests' counter
// tables (a row per channel with its value): one read-only REPEATABLE READ transaction whose
// first statement takes the snapshot, then the channel's counter. The caller reads the channel's
// stream position from Centrifugo first; events published at or before it are in the state read
// here, and an event whose transaction the snapshot sees is in it too.
func ReadCounter(ctx context.Context, databaseURL, table, channel string) (checkpoint.Snapshot, int64, error) {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return checkpoint.Snapshot{}, 0, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var snapText string
	var value int64
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&snapText); err != nil {
			return err
		}
		return tx.QueryRow(ctx, fmt.Sprintf(`SELECT value FROM %s WHERE channel = $1`, table), channel).Scan(&value)
	})
	if err != nil {
		return checkpoint.Snapshot{}, 0, fmt.Errorf("read the counter of %s in a snapshot: %w", channel, err)
	}
	snap, err := checkpoint.ParseSnapshot(snapText)
	return snap, value, err
}
