package capture

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// outputPlugin is the logical decoding output plugin pgoutbox reads: pgoutput, built into PostgreSQL
// (10 and later), so nothing has to be installed on the server.
const outputPlugin = "pgoutput"

// CreateTableSQL returns the statement that creates the outbox table with the configured column
// names, if it does not exist. The id comes from a sequence: it is assigned at INSERT time, so
// it is NOT the commit order (see DESIGN.md); the commit position header is.
func CreateTableSQL(t Table) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s (\n", t.QualifiedName())
	fmt.Fprintf(&b, "  %s bigserial PRIMARY KEY,\n", quote(t.ID))
	fmt.Fprintf(&b, "  %s text NOT NULL,\n", quote(t.Channel))
	fmt.Fprintf(&b, "  %s text NOT NULL,\n", quote(t.EventName))
	fmt.Fprintf(&b, "  %s jsonb,\n", quote(t.Payload))
	if t.Headers != "" {
		fmt.Fprintf(&b, "  %s jsonb,\n", quote(t.Headers))
	}
	if t.Topic != "" {
		fmt.Fprintf(&b, "  %s text,\n", quote(t.Topic))
	}
	b.WriteString("  created_at timestamptz NOT NULL DEFAULT now()\n)")
	return b.String()
}

// CreatePublicationSQL returns the statement that creates the publication of the outbox table.
// It publishes inserts only: the relay ignores updates and deletes, so the walsender need not
// send them (deleting published rows is then free).
func CreatePublicationSQL(publication string, t Table) string {
	return fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (publish = 'insert')",
		quote(publication), t.QualifiedName())
}

// CreateSlotSQL returns the statement that creates the logical replication slot.
func CreateSlotSQL(slot string) string {
	return fmt.Sprintf("SELECT pg_create_logical_replication_slot(%s, '%s')", literal(slot), outputPlugin)
}

// DropSlotSQL returns the statement that drops the slot (what an operator runs to stop pinning WAL).
func DropSlotSQL(slot string) string {
	return fmt.Sprintf("SELECT pg_drop_replication_slot(%s)", literal(slot))
}

func quote(ident string) string { return pgx.Identifier{ident}.Sanitize() }

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
