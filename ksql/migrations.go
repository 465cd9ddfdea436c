// Package ksql holds the ksqlDB migrations that build personal_recom in
// ksqlDB, the same result as the built-in recommender
// (streamer/recommender/testdata/scenario.json is the specification). Files
// follow ksql-migrations' naming, V<six digits>__<name>.sql, and are applied
// in version order by the bootstrap workflow's ksql step.
package ksql

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

//go:embed *.sql
var files embed.FS

// Files returns the migration files built into the binary.
func Files() fs.FS { return files }

// Migration is one versioned file.
type Migration struct {
	Version  int
	Name     string // from the file name, underscores as spaces (as ksql-migrations does)
	File     string
	Text     string
	Checksum string // hex SHA-256 of the file's bytes
}

var fileName = regexp.MustCompile(`^V([0-9]{6})__([A-Za-z0-9_]+)\.sql$`)

// Load reads every .sql file of fsys's top directory, in version order. A
// file not named V<six digits>__<name>.sql, version 0, or two files with one
// version are errors.
func Load(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("list ksqlDB migrations: %w", err)
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("ksqlDB migration %s: want the name V<six digits>__<name>.sql, e.g. V000004__add_index.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if v == 0 {
			return nil, fmt.Errorf("ksqlDB migration %s: versions start at 1", e.Name())
		}
		if other, ok := seen[v]; ok {
			return nil, fmt.Errorf("ksqlDB migrations %s and %s have the same version %d", other, e.Name(), v)
		}
		seen[v] = e.Name()
		raw, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read ksqlDB migration %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(raw)
		out = append(out, Migration{Version: v, Name: strings.ReplaceAll(m[2], "_", " "), File: e.Name(), Text: string(raw), Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Statements splits a file into its statements, without comments and
// without the closing semicolons. Semicolons inside 'strings' and
// `identifiers` do not split; a statement left without its semicolon at the
// end of the file is an error, as in ksqlDB.
func Statements(text string) ([]string, error) {
	var out []string
	var b strings.Builder
	flush := func() {
		if s := strings.TrimSpace(b.String()); s != "" {
			out = append(out, s)
		}
		b.Reset()
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '-' && i+1 < len(text) && text[i+1] == '-':
			for i < len(text) && text[i] != '\n' {
				i++
			}
			b.WriteByte('\n')
		case c == '/' && i+1 < len(text) && text[i+1] == '*':
			end := strings.Index(text[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("a /* comment is never closed")
			}
			i += 2 + end + 1
			b.WriteByte(' ')
		case c == '\'' || c == '`':
			j := i + 1
			for ; j < len(text); j++ {
				if text[j] == c {
					if c == '\'' && j+1 < len(text) && text[j+1] == '\'' {
						j++ // '' is a quote inside a string
						continue
					}
					break
				}
			}
			if j >= len(text) {
				return nil, fmt.Errorf("a %c quote is never closed: %.40q", c, text[i:])
			}
			b.WriteString(text[i : j+1])
			i = j
		case c == ';':
			flush()
		default:
			b.WriteByte(c)
		}
	}
	if s := strings.TrimSpace(b.String()); s != "" {
		return nil, fmt.Errorf("the last statement has no closing semicolon: %.60q", s)
	}
	return out, nil
}

var variable = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Substitute replaces every ${name} with vars[name]; a name with no value is
// an error. (ksql-migrations and ksqlDB itself substitute the same syntax.)
func Substitute(stmt string, vars map[string]string) (string, error) {
	var missing []string
	out := variable.ReplaceAllStringFunc(stmt, func(m string) string {
		name := m[2 : len(m)-1]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("no value for ${%s}", strings.Join(missing, "}, ${"))
	}
	return out, nil
}
