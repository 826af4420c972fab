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
	// RejectFunction raises the error of a bad channel for the other two. It only raises, so
	// PUBLIC may call it: the invoker form calls it from the caller's own query.
	RejectFunction = "pgoutbox_reject_channel"
)

// SendSecurity is how the functions of the WAL-only outbox get the right to emit messages.
type SendSecurity int

const (
	// SendInvoker is a LANGUAGE sql function with the caller's rights, which PostgreSQL inlines
	// into the caller's query: no function call at run time, so an event costs little more than
	// a bare pg_logical_emit_message. It needs the caller to be allowed pg_logical_emit_message,
	// as every role is by default: then SECURITY DEFINER would protect nothing (any role could
	// emit messages itself), and only costs (a PL/pgSQL call and a search_path switch per event).
	SendInvoker SendSecurity = iota
	// SendDefiner is a PL/pgSQL SECURITY DEFINER function with a fixed search_path, for a
	// hardened database that revokes pg_logical_emit_message from PUBLIC: a role that may only
	// execute the functions sends events, and cannot emit messages of its own.
	SendDefiner
)

// sendFunction is one function of the WAL-only outbox: its signature and how it writes data.
type sendFunction struct {
	name, dataType, dataKey, dataValue string
}

var sendFunctions = []sendFunction{
	{SendFunction, "jsonb", "data", "data::pg_catalog.text"},
	{SendBytesFunction, "bytea", "data_base64",
		`'"' OPERATOR(pg_catalog.||) pg_catalog.translate(pg_catalog.encode(data, 'base64'), E'\n', '') OPERATOR(pg_catalog.||) '"'`},
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

// rejectIdentity names the function that raises a bad channel's error.
func rejectIdentity(t Table) string {
	return pgx.Identifier{t.Schema, RejectFunction}.Sanitize() + "(text, text)"
}

// content is the expression of the message: the event in encoding version 1 (see messageV1),
// built as text in one concat() whose parts are NULL, and so left out, when their value is SQL
// NULL. Text, not jsonb: building a jsonb object, stripping its nulls and printing it cost
// about as much as emitting the message. Every name is qualified, so that the caller's
// search_path cannot change what the inlined body means.
func (f sendFunction) content() string {
	pair := func(key, value string) string {
		return fmt.Sprintf(`', "%s": ' OPERATOR(pg_catalog.||) %s`, key, value)
	}
	toJSON := func(arg string) string { return "pg_catalog.to_json(" + arg + ")::pg_catalog.text" }
	return fmt.Sprintf(`pg_catalog.concat('{"v": %d', %s,
      %s, %s,
      %s, %s, %s, '}')`, MessageVersion, pair("channel", toJSON("channel")), pair("name", toJSON("name")),
		pair("mutation_id", toJSON("mutation_id")), pair("rejected", "rejected::pg_catalog.text"),
		pair("headers", "headers::pg_catalog.text"), pair(f.dataKey, f.dataValue))
}

// goodChannel is the condition on the channel, as the outbox table's NOT NULL would check it (so
// a bad event fails the application's transaction instead of becoming a bad row): not NULL,
// not empty, no comma. One regular expression: every operator of an inlined body is set up
// again for each statement that calls it.
const goodChannel = `channel OPERATOR(pg_catalog.~) '^[^,]+$'`

// body is the function's body in the given form.
func (f sendFunction) body(t Table, prefix string, sec SendSecurity) string {
	if sec == SendDefiner {
		return fmt.Sprintf(`
DECLARE
  lsn pg_lsn;
BEGIN
  IF NOT coalesce(%s, false) THEN
    PERFORM %s(%s, channel);
  END IF;
  -- an assignment, not PERFORM: PL/pgSQL evaluates it as a simple expression, without an executor
  lsn := pg_logical_emit_message(true, %s, %s);
END
`, goodChannel, pgx.Identifier{t.Schema, RejectFunction}.Sanitize(), literal(f.name), literal(prefix), f.content())
	}
	return fmt.Sprintf(`
SELECT pg_catalog.pg_logical_emit_message(true, %s, CASE WHEN %s
    THEN %s
    ELSE %s(%s, channel) END)::pg_catalog.text::pg_catalog.void
`, literal(prefix), goodChannel, f.content(), pgx.Identifier{t.Schema, RejectFunction}.Sanitize(), literal(f.name))
}

// create is the CREATE OR REPLACE FUNCTION statement.
//
// SendInvoker: a VOLATILE LANGUAGE sql function without SECURITY DEFINER and without SET, so
// that PostgreSQL inlines it; its one SELECT names each argument but channel once (an argument
// used twice would be evaluated twice, and one that is costly or volatile, such as a subquery,
// keeps it from being inlined: it then runs as a plain SQL function, slower but the same).
//
// SendDefiner: SECURITY DEFINER with a fixed search_path (pg_logical_emit_message is executable
// by PUBLIC by default; a hardened database revokes that, and the functions still work for a
// role that may only execute them, as they run with their owner's right to emit messages).
func (f sendFunction) create(t Table, prefix string, sec SendSecurity) string {
	if sec == SendDefiner {
		return fmt.Sprintf("CREATE OR REPLACE FUNCTION %s(%s)\nRETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER\n"+
			"SET search_path = pg_catalog, pg_temp\nAS $pgoutbox$%s$pgoutbox$",
			pgx.Identifier{t.Schema, f.name}.Sanitize(), f.args(), f.body(t, prefix, sec))
	}
	return fmt.Sprintf("CREATE OR REPLACE FUNCTION %s(%s)\nRETURNS void LANGUAGE sql VOLATILE\nAS $pgoutbox$%s$pgoutbox$",
		pgx.Identifier{t.Schema, f.name}.Sanitize(), f.args(), f.body(t, prefix, sec))
}

// rejectBody raises the error of a bad channel for function fn.
const rejectBody = `
BEGIN
  RAISE EXCEPTION '%: channel % is NULL, empty or contains a comma', fn, pg_catalog.quote_nullable(channel)
    USING ERRCODE = '22023', HINT = 'fan-out servers read the channel header as a comma-separated list: give every event one non-empty channel';
END
`

// createReject is the CREATE OR REPLACE FUNCTION statement of the function that raises a bad
// channel's error. It returns text so that it can stand in a CASE next to the message content.
func createReject(t Table) string {
	return fmt.Sprintf("CREATE OR REPLACE FUNCTION %s(fn text, channel text)\nRETURNS text LANGUAGE plpgsql VOLATILE\nAS $pgoutbox$%s$pgoutbox$", pgx.Identifier{t.Schema, RejectFunction}.Sanitize(), rejectBody)
}

// SendFunctionsSQL returns the statements that install pgoutbox_send and pgoutbox_send_bytes
// in the outbox table's schema in the form sec, emitting messages with prefix, and revoke
// their execution from PUBLIC (grant it to the application's roles), and the function that
// raises a bad channel's error, which PUBLIC may execute (it only raises). Running them again
// changes nothing: CREATE OR REPLACE keeps the grants.
func SendFunctionsSQL(t Table, prefix string, sec SendSecurity) []string {
	stmts := []string{createReject(t), "GRANT EXECUTE ON FUNCTION " + rejectIdentity(t) + " TO PUBLIC"}
	for _, f := range sendFunctions {
		stmts = append(stmts, f.create(t, prefix, sec), "REVOKE ALL ON FUNCTION "+f.identity(t)+" FROM PUBLIC")
	}
	return stmts
}

// GrantSendSQL returns the statement that lets role call the functions of the WAL-only outbox.
func GrantSendSQL(t Table, role string) string {
	return fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s;\nGRANT EXECUTE ON FUNCTION %s, %s TO %s",
		quote(t.Schema), quote(role), sendFunctions[0].identity(t), sendFunctions[1].identity(t), quote(role))
}
