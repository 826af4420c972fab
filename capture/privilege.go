package capture

import (
	"context"
	"errors"
	"fmt"
)

// CheckSetupPrivileges reports, all at once, each privilege that the connected role lacks to
// create the objects of `pgoutbox setup` that do not exist yet. Objects that exist need no
// privilege (setup only verifies them), so a least-privilege relay role can run setup once the
// table's owner created the table and the publication. The slot needs REPLICATION, which
// [CheckServer] checks. Each error wraps [ErrPrivilege] and says who can fix it, and how.
func CheckSetupPrivileges(ctx context.Context, q Querier, t Table, publication string) error {
	var (
		user, db            string
		createInDB, pubOK   bool
		createInSchema, own *bool   // NULL: the schema, the table do not exist
		owner               *string // the table's owner
	)
	err := q.QueryRow(ctx, `SELECT current_user, current_database(),
		has_database_privilege(current_database(), 'CREATE'),
		EXISTS (SELECT FROM pg_publication WHERE pubname = $3),
		(SELECT has_schema_privilege(n.oid, 'CREATE') FROM pg_namespace n WHERE n.nspname = $1),
		(SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2),
		(SELECT pg_get_userbyid(c.relowner)::text FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2)`,
		t.Schema, t.Name, publication).Scan(&user, &db, &createInDB, &pubOK, &createInSchema, &own, &owner)
	if err != nil {
		return fmt.Errorf("read the privileges of the current role: %w", err)
	}
	var errs []error
	missing := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: role %q %s", ErrPrivilege, user, fmt.Sprintf(format, args...)))
	}
	tableMissing := own == nil
	switch {
	case tableMissing && createInSchema == nil:
		errs = append(errs, fmt.Errorf("%w: schema %q does not exist: create it, or set --table", ErrNoTable, t.Schema))
	case tableMissing && !*createInSchema:
		missing("may not create table %s: it lacks CREATE on schema %s; let the schema's owner create the table "+
			"(the CREATE TABLE of `pgoutbox setup --print-sql`), or GRANT CREATE ON SCHEMA %s TO %s",
			t.QualifiedName(), quote(t.Schema), quote(t.Schema), quote(user))
	}
	if pubOK {
		return errors.Join(errs...)
	}
	switch {
	case !tableMissing && !*own: // then CREATE on the database would not be enough
		missing("may not create publication %q: only the owner of %s, role %s, may publish it; let that role run "+
			"the CREATE PUBLICATION of `pgoutbox setup --print-sql`, then run setup again",
			publication, t.QualifiedName(), deref(owner))
	case !createInDB:
		missing("may not create publication %q: it lacks CREATE on database %s; let the table's owner create it "+
			"(the CREATE PUBLICATION of `pgoutbox setup --print-sql`), or GRANT CREATE ON DATABASE %s TO %s",
			publication, quote(db), quote(db), quote(user))
	}
	return errors.Join(errs...)
}
