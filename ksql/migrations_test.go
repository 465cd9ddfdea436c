package ksql

import (
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

func TestBuiltInMigrations(t *testing.T) {
	migs, err := Load(Files())
	if err != nil {
		t.Fatal(err)
	}
	if len(migs) == 0 {
		t.Fatal("no migrations built in")
	}
	known := map[string]string{"filtered_topic": "f", "find_topic": "q", "recom_topic": "r", "recom_schema_id": "7"}
	for i, m := range migs {
		if m.Version != i+1 {
			t.Errorf("%s: version %d, want %d (versions are contiguous)", m.File, m.Version, i+1)
		}
		stmts, err := Statements(m.Text)
		if err != nil {
			t.Errorf("%s: %v", m.File, err)
			continue
		}
		if len(stmts) == 0 {
			t.Errorf("%s: no statements", m.File)
		}
		for _, s := range stmts {
			if _, err := Substitute(s, known); err != nil {
				t.Errorf("%s: %v", m.File, err)
			}
			// Topics come from the configuration, never from the file.
			if regexp.MustCompile(`(?i)KAFKA_TOPIC\s*=\s*'[^$]`).MatchString(s) {
				t.Errorf("%s names a topic outright: %.80s", m.File, s)
			}
			if strings.HasPrefix(s, "CREATE") && !strings.Contains(s, "IF NOT EXISTS") {
				t.Errorf("%s: %.60q lacks IF NOT EXISTS: a version left RUNNING could not be applied again", m.File, s)
			}
		}
	}
}

// The normalisation is spelled out several times; every spelling must be
// the same expression, or names and prompts would be folded differently.
func TestNormalisationIsTheSameEverywhere(t *testing.T) {
	migs, err := Load(Files())
	if err != nil {
		t.Fatal(err)
	}
	norm := regexp.MustCompile("REPLACE\\(TRIM\\(REGEXP_REPLACE\\(LCASE\\(UCASE\\(LCASE\\(`(name|query)`\\)\\)\\), '\\(\\?U\\)\\\\s\\+', ' '\\)\\), 'ς', 'σ'\\)")
	loose := regexp.MustCompile(`REGEXP_REPLACE\(`)
	found := 0
	for _, m := range migs {
		n := len(norm.FindAllString(m.Text, -1))
		if l := len(loose.FindAllString(m.Text, -1)); l != n {
			t.Errorf("%s: %d normalisations, %d of them not the canonical one", m.File, l, l-n)
		}
		found += n
	}
	if found < 5 {
		t.Errorf("found %d normalisations, want the table key, its GROUP BY and the prompt's three", found)
	}
}

func TestLoadRefusesBadNames(t *testing.T) {
	for i, c := range []struct {
		files fstest.MapFS
		want  string
	}{
		{fstest.MapFS{"V1__x.sql": {Data: []byte("x;")}}, "want the name V<six digits>__<name>.sql"},
		{fstest.MapFS{"V000000__x.sql": {Data: []byte("x;")}}, "versions start at 1"},
		{fstest.MapFS{"V000001__a.sql": {Data: []byte("x;")}, "V000001__b.sql": {Data: []byte("y;")}}, "have the same version 1"},
	} {
		if _, err := Load(c.files); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("#%d: Load = %v, want an error saying %q", i, err, c.want)
		}
	}
	migs, err := Load(fstest.MapFS{
		"V000010__later.sql": {Data: []byte("b;")}, "V000002__first_one.sql": {Data: []byte("a;")}, "README.md": {Data: []byte("no")},
	})
	if err != nil || len(migs) != 2 || migs[0].Version != 2 || migs[0].Name != "first one" || migs[1].File != "V000010__later.sql" {
		t.Fatalf("Load = %+v, %v", migs, err)
	}
	if sum := sha256.Sum256([]byte("a;")); migs[0].Checksum != hex.EncodeToString(sum[:]) {
		t.Fatalf("checksum %q is not the hex SHA-256 of the file", migs[0].Checksum)
	}
}

func TestStatements(t *testing.T) {
	got, err := Statements(`-- a comment; with a semicolon
SET 'auto.offset.reset' = 'earliest';
CREATE STREAM A (X STRING) WITH (KAFKA_TOPIC = 'a;b', VALUE_FORMAT = 'JSON'); /* block; comment */
SELECT 'it''s; fine', ` + "`odd;name`" + ` FROM A -- trailing
  WHERE X <> ';';
`)
	want := []string{
		"SET 'auto.offset.reset' = 'earliest'",
		"CREATE STREAM A (X STRING) WITH (KAFKA_TOPIC = 'a;b', VALUE_FORMAT = 'JSON')",
		"SELECT 'it''s; fine', `odd;name` FROM A \n  WHERE X <> ';'",
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Statements = %q, %v\nwant %q", got, err, want)
	}
	for i, bad := range []string{"CREATE STREAM A", "SELECT 'open;", "/* never closed; "} {
		if _, err := Statements(bad); err == nil {
			t.Errorf("#%d: Statements(%q) accepted it", i, bad)
		}
	}
}

func TestSubstitute(t *testing.T) {
	got, err := Substitute("KAFKA_TOPIC = '${t}', ID = ${id}, '$notvar'", map[string]string{"t": "orders", "id": "3"})
	if err != nil || got != "KAFKA_TOPIC = 'orders', ID = 3, '$notvar'" {
		t.Fatalf("Substitute = %q, %v", got, err)
	}
	if _, err := Substitute("${a} ${b}", map[string]string{"a": "x"}); err == nil || !strings.Contains(err.Error(), "${b}") {
		t.Fatalf("a missing variable gave %v", err)
	}
}
