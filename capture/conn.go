package capture

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Conn is a normal (non-replication) connection to PostgreSQL, for the catalog functions:
// setup, the start-up checks, the slot's figures, the publication guard, retention. It is a
// [TxQuerier]. Open it with [Connect]: the command and its subcommands never handle the driver.
type Conn struct {
	*pgx.Conn
}

// Connect opens a normal connection to url. A failure is classified ([ClassifyConnectError]:
// the cause and the fix) and names the database with its password redacted ([RedactURL]).
// This is the one connect preamble of pgoutbox's commands.
func Connect(ctx context.Context, url string) (*Conn, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("%w (database %s)", ClassifyConnectError(err), RedactURL(url))
	}
	return &Conn{Conn: conn}, nil
}

// Close closes the connection, on a context of its own: a cancelled caller must still end the
// session politely. It is safe on a nil *Conn.
func (c *Conn) Close() {
	if c != nil && c.Conn != nil {
		_ = c.Conn.Close(context.Background())
	}
}

// DropSlot drops the replication slot (see [DropSlotSQL]). It fails while a process streams
// from the slot.
func DropSlot(ctx context.Context, q Querier, slot string) error {
	if _, err := q.Exec(ctx, DropSlotSQL(slot)); err != nil {
		return fmt.Errorf("drop slot %q: %w", slot, err)
	}
	return nil
}
