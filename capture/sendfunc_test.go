package capture_test

import (
	"strings"
	"testing"

	"github.com/pgoutbox/pgoutbox/capture"
)

func TestSendFunctionsSQL(t *testing.T) {
	t.Parallel()
	tbl := capture.DefaultTable()
	tbl.Schema = "App"
	stmts := capture.SendFunctionsSQL(tbl, "it's")
	if len(stmts) != 4 {
		t.Fatalf("%d statements, want CREATE and REVOKE of two functions:\n%s", len(stmts), strings.Join(stmts, "\n"))
	}
	for i, want := range []string{
		`CREATE OR REPLACE FUNCTION "App"."pgoutbox_send"(channel text, name text, data jsonb, headers jsonb DEFAULT NULL, mutation_id text DEFAULT NULL, rejected boolean DEFAULT NULL)`,
		`REVOKE ALL ON FUNCTION "App"."pgoutbox_send"(text, text, jsonb, jsonb, text, boolean) FROM PUBLIC`,
		`CREATE OR REPLACE FUNCTION "App"."pgoutbox_send_bytes"(channel text, name text, data bytea,`,
		`REVOKE ALL ON FUNCTION "App"."pgoutbox_send_bytes"(text, text, bytea, jsonb, text, boolean) FROM PUBLIC`,
	} {
		if !strings.HasPrefix(stmts[i], want) {
			t.Errorf("statement %d:\n%s\nwant it to start with\n%s", i, stmts[i], want)
		}
	}
	for _, s := range []string{stmts[0], stmts[2]} {
		for _, want := range []string{"SECURITY DEFINER", "SET search_path = pg_catalog, pg_temp",
			`pg_logical_emit_message(true, 'it''s', `, `jsonb_build_object('v', 1, `} {
			if !strings.Contains(s, want) {
				t.Errorf("function does not contain %q:\n%s", want, s)
			}
		}
		if strings.Contains(s, ";\n\n") || strings.Contains(s, "%!") {
			t.Errorf("function has a blank line after a statement (--print-sql separates statements with them) or a formatting error:\n%s", s)
		}
	}
	if !strings.Contains(stmts[2], `jsonb_build_object('data_base64', translate(encode(data, 'base64'), E'\n', ''))`) {
		t.Errorf("bytes function does not send base64 without line breaks:\n%s", stmts[2])
	}
	if g := capture.GrantSendSQL(tbl, "app"); !strings.Contains(g, `GRANT EXECUTE ON FUNCTION "App"."pgoutbox_send"(text, text, jsonb, jsonb, text, boolean), "App"."pgoutbox_send_bytes"(`) {
		t.Errorf("GrantSendSQL = %s", g)
	}
}
