package capture

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgoutbox/pgoutbox/record"
)

// maxIdentifierLen is PostgreSQL's NAMEDATALEN-1: longer identifiers are silently truncated by
// the server, so a longer configured name would never match the Relation message.
const maxIdentifierLen = 63

// Table names the outbox table and its columns. Column names are exact (case-sensitive) names
// as stored in the catalog. The zero value is not usable: start from [DefaultTable].
type Table struct {
	Schema string // schema of the outbox table; default "public"
	Name   string // name of the outbox table; default "outbox"

	ID        string // column with the row id (sent as a header); default "sequence_id"
	Channel   string // column with the Kafka key; default "channel"
	EventName string // column with the event name (sent as a header); default "name"
	Payload   string // column with the Kafka value; default "data"
	Headers   string // jsonb object column copied into Kafka headers; default "headers", "" = none

	// Topic is a column holding the Kafka topic of each row; a NULL or empty value means the
	// configured topic. Default "" = every row goes to the configured topic.
	Topic string

	// MutationID is a column holding the id of the client's optimistic update that the row
	// answers, sent as the pgoutbox-mutation-id header when not NULL. Default "" = none.
	MutationID string

	// Rejected is a column (usually boolean) saying that the server rejected that optimistic
	// update, sent as the pgoutbox-rejected header ("true"/"false") when not NULL. Default "" =
	// none.
	Rejected string

	// ExtraHeaders are columns copied into Kafka headers, each under its column name, as text.
	// Default none.
	ExtraHeaders []string
}

// DefaultTable returns the table of the documented schema: public.outbox(sequence_id, channel,
// name, data, headers), with no topic column and no extra header columns.
func DefaultTable() Table {
	return Table{
		Schema:    "public",
		Name:      "outbox",
		ID:        "sequence_id",
		Channel:   "channel",
		EventName: "name",
		Payload:   "data",
		Headers:   "headers",
	}
}

// QualifiedName returns the table's name quoted for SQL: "public"."outbox".
func (t Table) QualifiedName() string {
	return pgx.Identifier{t.Schema, t.Name}.Sanitize()
}

// Validate reports every problem of the configuration at once, joined with [errors.Join]: empty
// or too long names, a column configured twice, an extra header column whose name is a reserved
// header key.
func (t Table) Validate() error {
	var errs []error
	problem := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("capture: "+format, args...))
	}
	checkName := func(what, name string) {
		switch {
		case name == "":
			problem("%s is empty", what)
		case len(name) > maxIdentifierLen:
			problem("%s %q is longer than %d bytes, PostgreSQL would truncate it", what, name, maxIdentifierLen)
		case strings.ContainsRune(name, 0):
			problem("%s %q contains a NUL byte", what, name)
		}
	}
	checkName("outbox table schema", t.Schema)
	checkName("outbox table name", t.Name)

	seen := make(map[string]string) // column name -> role
	for _, c := range t.columns() {
		what := c.role + " column"
		checkName(what, c.name)
		if c.name == "" {
			continue
		}
		if prev, dup := seen[c.name]; dup {
			problem("column %q is configured twice (as the %s column and as the %s column)", c.name, prev, c.role)
			continue
		}
		seen[c.name] = c.role
		if c.role == roleExtraHeader && strings.HasPrefix(c.name, record.HeaderPrefix) {
			problem("extra header column %q: header keys starting with %q are reserved for pgoutbox", c.name, record.HeaderPrefix)
		}
	}
	return errors.Join(errs...)
}

// Column roles, as named in errors.
const (
	roleID          = "id"
	roleChannel     = "channel"
	roleEventName   = "event name"
	rolePayload     = "payload"
	roleHeaders     = "headers"
	roleTopic       = "topic"
	roleMutationID  = "mutation id"
	roleRejected    = "rejected"
	roleExtraHeader = "extra header"
)

// column is one configured column: its role, its name, and the flag that sets it.
type column struct {
	role, name, flag string
}

// columns lists the configured columns: the four required ones, then the optional ones that are
// set, then the extra header columns in order.
func (t Table) columns() []column {
	cols := []column{
		{roleID, t.ID, "--id-column"},
		{roleChannel, t.Channel, "--channel-column"},
		{roleEventName, t.EventName, "--name-column"},
		{rolePayload, t.Payload, "--payload-column"},
	}
	if t.Headers != "" {
		cols = append(cols, column{roleHeaders, t.Headers, "--headers-column"})
	}
	if t.Topic != "" {
		cols = append(cols, column{roleTopic, t.Topic, "--topic-column"})
	}
	if t.MutationID != "" {
		cols = append(cols, column{roleMutationID, t.MutationID, "--mutation-id-column"})
	}
	if t.Rejected != "" {
		cols = append(cols, column{roleRejected, t.Rejected, "--rejected-column"})
	}
	for _, name := range t.ExtraHeaders {
		cols = append(cols, column{roleExtraHeader, name, "--extra-header-columns"})
	}
	return cols
}

// ParseTableName splits a table name as written in SQL into schema and name: "outbox" means
// public.outbox, "app.outbox" names the schema. As in SQL, an unquoted identifier is folded to
// lower case and a double-quoted one is kept as is ("My Schema"."Outbox", with "" for a quote).
func ParseTableName(s string) (schema, name string, err error) {
	parts, err := splitIdentifiers(strings.TrimSpace(s))
	if err != nil {
		return "", "", fmt.Errorf("capture: parse table name %q: %w", s, err)
	}
	switch len(parts) {
	case 1:
		return "public", parts[0], nil
	case 2:
		return parts[0], parts[1], nil
	default:
		return "", "", fmt.Errorf("capture: parse table name %q: want table or schema.table, got %d dot-separated names", s, len(parts))
	}
}

// splitIdentifiers splits a dot-separated list of SQL identifiers.
func splitIdentifiers(s string) ([]string, error) {
	var parts []string
	for {
		part, rest, err := nextIdentifier(s)
		if err != nil {
			return nil, err
		}
		parts = append(parts, part)
		if rest == "" {
			return parts, nil
		}
		if rest[0] != '.' {
			return nil, fmt.Errorf("unexpected %q after %q", rest[0], part)
		}
		s = rest[1:]
	}
}

// nextIdentifier reads one quoted or unquoted identifier from the start of s.
func nextIdentifier(s string) (ident, rest string, err error) {
	if s == "" {
		return "", "", errors.New("empty name")
	}
	if s[0] == '"' {
		return quotedIdentifier(s)
	}
	end := 0
	for end < len(s) && isIdentifierByte(s[end], end == 0) {
		end++
	}
	if end == 0 {
		return "", "", fmt.Errorf("unexpected %q: quote names that are not plain identifiers", s[0])
	}
	return foldASCII(s[:end]), s[end:], nil
}

// quotedIdentifier reads a double-quoted identifier ("" stands for one quote) from the start of s.
func quotedIdentifier(s string) (ident, rest string, err error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '"' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '"' {
			b.WriteByte('"')
			i++
			continue
		}
		if b.Len() == 0 {
			return "", "", errors.New(`empty quoted name ""`)
		}
		return b.String(), s[i+1:], nil
	}
	return "", "", errors.New("unterminated quoted name")
}

// foldASCII lowers ASCII letters only, as PostgreSQL does for unquoted identifiers in a
// multibyte encoding such as UTF-8.
func foldASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// isIdentifierByte reports whether c may appear in an unquoted identifier (PostgreSQL's lexer:
// letters, digits, _ and $, non-ASCII bytes; no digit or $ first).
func isIdentifierByte(c byte, first bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c >= 0x80:
		return true
	case c >= '0' && c <= '9', c == '$':
		return !first
	}
	return false
}
