package capture

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// PublicationState is what the relay verifies of its publication while it streams: PostgreSQL
// stops sending the outbox's inserts, silently, the moment the publication stops covering them
// (ALTER PUBLICATION … DROP TABLE, SET (publish = …), DROP PUBLICATION).
type PublicationState struct {
	Exists           bool
	PublishesInserts bool // pubinsert
	IncludesTable    bool // the outbox is in pg_publication_tables (directly, by schema or all tables)

	// Version names the catalog rows that decide the above: the publication's and the table's
	// row (oid and xmin), and the table's membership rows. Any change to them — also one undone
	// a moment later, which a check of the state alone would miss — gives another Version:
	// an UPDATE gives a row a new xmin, dropping and re-adding a table a new membership row.
	Version string
}

// publicationStateSQL reads the state in one statement. pg_publication_namespace (TABLES IN
// SCHEMA) exists from PostgreSQL 15, the oldest version pgoutbox supports.
const publicationStateSQL = `SELECT p.oid IS NOT NULL, coalesce(p.pubinsert, false),
	coalesce(EXISTS (SELECT 1 FROM pg_publication_tables pt WHERE pt.pubname = p.pubname AND pt.schemaname = $2 AND pt.tablename = $3), false),
	concat_ws(';', p.oid::text || ':' || p.xmin::text, c.oid::text,
		(SELECT string_agg(pr.oid::text || ':' || pr.xmin::text, ',' ORDER BY pr.oid) FROM pg_publication_rel pr
			WHERE pr.prpubid = p.oid AND pr.prrelid = c.oid),
		(SELECT string_agg(pn.oid::text || ':' || pn.xmin::text, ',' ORDER BY pn.oid) FROM pg_publication_namespace pn
			WHERE pn.pnpubid = p.oid AND pn.pnnspid = c.relnamespace))
	FROM (SELECT 1) one
	LEFT JOIN pg_publication p ON p.pubname = $1
	LEFT JOIN pg_class c ON c.oid = to_regclass(quote_ident($2) || '.' || quote_ident($3))`

// ReadPublicationState reads the publication's state over a normal connection.
func ReadPublicationState(ctx context.Context, q Querier, publication string, t Table) (PublicationState, error) {
	var s PublicationState
	err := q.QueryRow(ctx, publicationStateSQL, publication, t.Schema, t.Name).
		Scan(&s.Exists, &s.PublishesInserts, &s.IncludesTable, &s.Version)
	if err != nil {
		return s, fmt.Errorf("read publication %q: %w", publication, err)
	}
	return s, nil
}

// Problem returns nil when the publication sends the outbox's inserts, or an error wrapping
// [ErrNoPublication] that names the fix.
func (s PublicationState) Problem(publication string, t Table) error {
	switch {
	case !s.Exists:
		return fmt.Errorf("%w: publication %q does not exist in this database: create it with `pgoutbox setup`",
			ErrNoPublication, publication)
	case !s.IncludesTable:
		return fmt.Errorf("%w: publication %q does not include %s: run `pgoutbox setup`, which adds it back",
			ErrNoPublication, publication, t.QualifiedName())
	case !s.PublishesInserts:
		return fmt.Errorf("%w: publication %q does not publish inserts: run `pgoutbox setup`, which adds inserts to what it publishes",
			ErrNoPublication, publication)
	}
	return nil
}

// CurrentWAL returns pg_current_wal_lsn().
func CurrentWAL(ctx context.Context, q Querier) (LSN, error) {
	var s string
	if err := q.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&s); err != nil {
		return 0, fmt.Errorf("read the current WAL position: %w", err)
	}
	return pglogrepl.ParseLSN(s)
}
