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
	for _, tc := range []struct {
		name string
		sec  capture.SendSecurity
		want []string // in both send functions
		not  []string
	}{
		{"invoker", capture.SendInvoker, []string{"LANGUAGE sql VOLATILE\nAS", "SELECT pg_catalog.pg_logical_emit_message(true, 'it''s', CASE WHEN"},
			[]string{"SECURITY DEFINER", "SET search_path", "plpgsql"}},
		{"definer", capture.SendDefiner, []string{"LANGUAGE plpgsql VOLATILE SECURITY DEFINER\nSET search_path = pg_catalog, pg_temp\n",
			"lsn := pg_logical_emit_message(true, 'it''s', "}, []string{"PERFORM pg_logical_emit_message"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stmts := capture.SendFunctionsSQL(tbl, "it's", tc.sec)
			if len(stmts) != 6 {
				t.Fatalf("%d statements, want CREATE and GRANT of the reject function, CREATE and REVOKE of two functions:\n%s",
					len(stmts), strings.Join(stmts, "\n"))
			}
			for i, want := range []string{
				`CREATE OR REPLACE FUNCTION "App"."pgoutbox_reject_channel"(fn text, channel text)`,
				`GRANT EXECUTE ON FUNCTION "App"."pgoutbox_reject_channel"(text, text) TO PUBLIC`,
				`CREATE OR REPLACE FUNCTION "App"."pgoutbox_send"(channel text, name text, data jsonb, headers jsonb DEFAULT NULL, mutation_id text DEFAULT NULL, rejected boolean DEFAULT NULL)`,
				`REVOKE ALL ON FUNCTION "App"."pgoutbox_send"(text, text, jsonb, jsonb, text, boolean) FROM PUBLIC`,
				`CREATE OR REPLACE FUNCTION "App"."pgoutbox_send_bytes"(channel text, name text, data bytea,`,
				`REVOKE ALL ON FUNCTION "App"."pgoutbox_send_bytes"(text, text, bytea, jsonb, text, boolean) FROM PUBLIC`,
			} {
				if !strings.HasPrefix(stmts[i], want) {
					t.Errorf("statement %d:\n%s\nwant it to start with\n%s", i, stmts[i], want)
				}
			}
			for _, s := range []string{stmts[2], stmts[4]} {
				for _, want := range append(tc.want, `channel OPERATOR(pg_catalog.~) '^[^,]+$'`, `"App"."pgoutbox_reject_channel"(`,
					`pg_catalog.concat('{"v": 1', ', "channel": ' OPERATOR(pg_catalog.||) pg_catalog.to_json(channel)::pg_catalog.text`) {
					if !strings.Contains(s, want) {
						t.Errorf("function does not contain %q:\n%s", want, s)
					}
				}
				for _, not := range tc.not {
					if strings.Contains(s, not) {
						t.Errorf("function contains %q:\n%s", not, s)
					}
				}
				if strings.Contains(s, ";\n\n") || strings.Contains(s, "%!") {
					t.Errorf("function has a blank line after a statement (--print-sql separates statements with them) or a formatting error:\n%s", s)
				}
			}
			if !strings.Contains(stmts[2], `', "data": ' OPERATOR(pg_catalog.||) data::pg_catalog.text`) {
				t.Errorf("send function does not send data as its jsonb text:\n%s", stmts[2])
			}
			if !strings.Contains(stmts[4], `pg_catalog.translate(pg_catalog.encode(data, 'base64'), E'\n', '')`) {
				t.Errorf("bytes function does not send base64 without line breaks:\n%s", stmts[4])
			}
		})
	}
	if g := capture.GrantSendSQL(tbl, "app"); !strings.Contains(g, `GRANT EXECUTE ON FUNCTION "App"."pgoutbox_send"(text, text, jsonb, jsonb, text, boolean), "App"."pgoutbox_send_bytes"(`) {
		t.Errorf("GrantSendSQL = %s", g)
	}
}
