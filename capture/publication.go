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

	// Version names the catalog rows that decide whether the outbox is in the publication: the
	// publication's oid, the table's oid, and the table's membership rows (oid and xmin). Any
	// change to them — also one undone a moment later, which a check of the state alone would
	// miss — gives another Version: dropping and re-adding a table gives a new membership row,
	// re-creating the publication a new oid.
	Version string
	// RowVersion names the publication's own catalog row (oid and xmin): every ALTER PUBLICATION
	// … SET (…) and OWNER TO gives it a new xmin. Such a change alone may leave the outbox
	// inserts covered throughout (publish_via_partition_root on an unpartitioned outbox, update
	// added to publish), or may have stopped covering them for a moment (publish without insert,
	// then with it again, between two checks): the catalog cannot tell which, the WAL can (see
	// the relay's publication guard).
	RowVersion string
}

// publicationStateSQL reads the state in one statement. pg_publication_namespace (TABLES IN
// SCHEMA) exists from PostgreSQL 15, the oldest version pgoutbox supports.
const publicationStateSQL = `SELECT p.oid IS NOT NULL, coalesce(p.pubinsert, false),
	coalesce(EXISTS (SELECT 1 FROM pg_publication_tables pt WHERE pt.pubname = p.pubname AND pt.schemaname = $2 AND pt.tablename = $3), false),
	concat_ws(';', p.oid::text, c.oid::text,
		(SELECT string_agg(pr.oid::text || ':' || pr.xmin::text, ',' ORDER BY pr.oid) FROM pg_publication_rel pr
			WHERE pr.prpubid = p.oid AND pr.prrelid = c.oid),
		(SELECT string_agg(pn.oid::text || ':' || pn.xmin::text, ',' ORDER BY pn.oid) FROM pg_publication_namespace pn
			WHERE pn.pnpubid = p.oid AND pn.pnnspid = c.relnamespace)),
	coalesce(p.oid::text || ':' || p.xmin::text, '')
	FROM (SELECT 1) one
	LEFT JOIN pg_publication p ON p.pubname = $1
	LEFT JOIN pg_class c ON c.oid = to_regclass(quote_ident($2) || '.' || quote_ident($3))`

// ReadPublicationState reads the publication's state over a normal connection.
func ReadPublicationState(ctx context.Context, q Querier, publication string, t Table) (PublicationState, error) {
	var s PublicationState
	err := q.QueryRow(ctx, publicationStateSQL, publication, t.Schema, t.Name).
		Scan(&s.Exists, &s.PublishesInserts, &s.IncludesTable, &s.Version, &s.RowVersion)
	if err != nil {
		return s, fmt.Errorf("read publication %q: %w", publication, err)
	}
	return s, nil
}

// publicationChangedSQL compares the transaction ids of the catalog rows that decide whether
// the publication covers the outbox (the publication's own row, the table's and its schema's
// membership rows) with the slot's catalog_xmin. Every transaction that commits after the
// slot's restart point — so every one after its confirmed position — has an id at or after
// catalog_xmin (it was running at the restart point, or began later): the test misses no such
// change. age() counts back from the current transaction, so it orders ids across wraparound;
// a frozen row's age is the largest.
const publicationChangedSQL = `SELECT coalesce(bool_or(age(r.x) <= age(s.catalog_xmin)), false)
	FROM pg_replication_slots s,
	LATERAL (SELECT p.xmin AS x FROM pg_publication p WHERE p.pubname = $2
		UNION ALL SELECT pr.xmin FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
			WHERE p.pubname = $2 AND pr.prrelid = to_regclass(quote_ident($3) || '.' || quote_ident($4))
		UNION ALL SELECT pn.xmin FROM pg_publication_namespace pn JOIN pg_publication p ON p.oid = pn.pnpubid
			WHERE p.pubname = $2 AND pn.pnnspid = to_regnamespace(quote_ident($3))) r
	WHERE s.slot_name = $1 AND s.catalog_xmin IS NOT NULL`

// PublicationChangedSinceSlot reports whether a catalog row that decides whether publication
// covers the outbox was written by a transaction newer than the slot's catalog_xmin: the
// publication was created, altered, or had the outbox (or its schema) added, after the oldest
// WAL the slot may still decode. Such a change may lie in the WAL that the next session decodes
// — made while no relay watched — or before it (catalog_xmin trails the confirmed position,
// held back by the transactions running at the slot's restart point). It is a sign to verify,
// not proof of a loss: most such changes are harmless. False when the slot does not exist.
func PublicationChangedSinceSlot(ctx context.Context, q Querier, slot, publication string, t Table) (bool, error) {
	var changed bool
	if err := q.QueryRow(ctx, publicationChangedSQL, slot, publication, t.Schema, t.Name).Scan(&changed); err != nil {
		return false, fmt.Errorf("compare publication %q with slot %q: %w", publication, slot, err)
	}
	return changed, nil
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
