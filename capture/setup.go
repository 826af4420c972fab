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
// it is NOT the commit order (see docs/architecture.md); the commit position header is.
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

// The functions of the WAL-only outbox that `pgoutbox setup` installs in the outbox table's
// schema (see [SendFunctionsSQL]).
const (
	SendFunction      = "pgoutbox_send"       // (channel, name, data jsonb, headers, mutation_id, rejected)
	SendBytesFunction = "pgoutbox_send_bytes" // the same with data bytea
)

// sendFunction is one function of the WAL-only outbox: its signature and its body.
type sendFunction struct {
	name, dataType, dataKey, dataValue string
}

var sendFunctions = []sendFunction{
	{SendFunction, "jsonb", "data", "data"},
	{SendBytesFunction, "bytea", "data_base64", `translate(encode(data, 'base64'), E'\n', '')`},
}

// args is the argument list of the function, as in CREATE FUNCTION.
func (f sendFunction) args() string {
	return "channel text, name text, data " + f.dataType +
		", headers jsonb DEFAULT NULL, mutation_id text DEFAULT NULL, rejected boolean DEFAULT NULL"
}

// identity names the function with its argument types, as regprocedure reads it.
func (f sendFunction) identity(t Table) string {
	return pgx.Identifier{t.Schema, f.name}.Sanitize() + "(text, text, " + f.dataType + ", jsonb, text, boolean)"
}

// body is the function's PL/pgSQL body: it checks the channel, as the outbox table's NOT NULL
// would (so a bad event fails the application's transaction instead of becoming a bad row), and
// emits a transactional message holding the event in encoding version 1 (see messageV1): keys
// whose value is SQL NULL are left out; jsonb_strip_nulls is applied to the scalar keys only,
// as it would also strip the nulls inside data and headers.
func (f sendFunction) body(prefix string) string {
	return fmt.Sprintf(`
BEGIN
  IF channel IS NULL OR channel = '' OR strpos(channel, ',') > 0 THEN
    RAISE EXCEPTION '%s: channel %% is NULL, empty or contains a comma', quote_nullable(channel)
      USING ERRCODE = '22023', HINT = 'fan-out servers read the channel header as a comma-separated list: give every event one non-empty channel';
  END IF;
  PERFORM pg_logical_emit_message(true, %s, (jsonb_strip_nulls(jsonb_build_object('v', %d, 'channel', channel,
      'name', name, 'mutation_id', mutation_id, 'rejected', rejected))
    || CASE WHEN headers IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('headers', headers) END
    || CASE WHEN data IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('%s', %s) END)::text);
END
`, f.name, literal(prefix), MessageVersion, f.dataKey, f.dataValue)
}

// create is the CREATE OR REPLACE FUNCTION statement. SECURITY DEFINER with a fixed search_path:
// pg_logical_emit_message is executable by PUBLIC by default, so any role could emit events; a
// hardened database revokes that, and the functions still work for a role that may only execute
// them, as they run with their owner's right to emit messages.
func (f sendFunction) create(t Table, prefix string) string {
	return fmt.Sprintf("CREATE OR REPLACE FUNCTION %s(%s)\nRETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER\n"+
		"SET search_path = pg_catalog, pg_temp\nAS $pgoutbox$%s$pgoutbox$",
		pgx.Identifier{t.Schema, f.name}.Sanitize(), f.args(), f.body(prefix))
}

// SendFunctionsSQL returns the statements that install pgoutbox_send and pgoutbox_send_bytes
// in the outbox table's schema, emitting messages with prefix, and revoke their execution from
// PUBLIC (grant it to the application's roles). Running them again changes nothing: CREATE OR
// REPLACE keeps the grants.
func SendFunctionsSQL(t Table, prefix string) []string {
	var stmts []string
	for _, f := range sendFunctions {
		stmts = append(stmts, f.create(t, prefix), "REVOKE ALL ON FUNCTION "+f.identity(t)+" FROM PUBLIC")
	}
	return stmts
}

// GrantSendSQL returns the statement that lets role call the functions of the WAL-only outbox.
func GrantSendSQL(t Table, role string) string {
	return fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s;\nGRANT EXECUTE ON FUNCTION %s, %s TO %s",
		quote(t.Schema), quote(role), sendFunctions[0].identity(t), sendFunctions[1].identity(t), quote(role))
}
