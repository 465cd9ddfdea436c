package main

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// selector is one series selector of a PromQL expression: a metric name
// (or, for {__name__=~"…"}, a regular expression over names) and the label
// names its matchers use.
type selector struct {
	name, nameRegex string
	labels          []string
}

var (
	// Keywords and aggregation operators: never metric names.
	promqlKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
		"offset", "inf", "nan", "atan2", "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
		"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
	// Clauses whose parenthesised list holds label names.
	promqlLabelClauses = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}
)

// promqlSelectors returns the selectors of a PromQL expression. It is a
// lexer, not a parser: enough to find every metric name and matcher of the
// expressions in dashboards/ and alert rules, which promtool checks for
// syntax. Grafana's variables ($__rate_interval, ${x}) are skipped.
func promqlSelectors(expr string) ([]selector, error) {
	s := []rune(expr)
	var out []selector
	i, depth := 0, 0
	skipSpace := func(j int) int {
		for j < len(s) && unicode.IsSpace(s[j]) {
			j++
		}
		return j
	}
	isIdentStart := func(r rune) bool { return r == '_' || r == ':' || unicode.IsLetter(r) }
	isIdent := func(r rune) bool { return isIdentStart(r) || unicode.IsDigit(r) }
	skipString := func(j int) (int, error) {
		q := s[j]
		for j++; j < len(s); j++ {
			if s[j] == '\\' && q != '`' {
				j++
				continue
			}
			if s[j] == q {
				return j + 1, nil
			}
		}
		return 0, fmt.Errorf("%q: unterminated string", expr)
	}
	closing := func(j int, open, close rune) (int, error) {
		depth := 0
		for ; j < len(s); j++ {
			switch s[j] {
			case '"', '\'', '`':
				k, err := skipString(j)
				if err != nil {
					return 0, err
				}
				j = k - 1
			case open:
				depth++
			case close:
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("%q: unbalanced %c", expr, open)
	}
	// matchers reads {a="x", b=~"y"} at s[j] == '{'.
	matchers := func(j int, sel *selector) (int, error) {
		end, err := closing(j, '{', '}')
		if err != nil {
			return 0, err
		}
		for k := j + 1; k < end-1; {
			k = skipSpace(k)
			if k >= end-1 || s[k] == ',' {
				k++
				continue
			}
			start := k
			for k < end-1 && isIdent(s[k]) {
				k++
			}
			label := string(s[start:k])
			k = skipSpace(k)
			opStart := k
			for k < end-1 && strings.ContainsRune("=!~", s[k]) {
				k++
			}
			op := string(s[opStart:k])
			k = skipSpace(k)
			if label == "" || op == "" || k >= end-1 || !strings.ContainsRune("\"'`", s[k]) {
				return 0, fmt.Errorf("%q: cannot read the matcher at %q", expr, string(s[start:end]))
			}
			vEnd, err := skipString(k)
			if err != nil {
				return 0, err
			}
			value := string(s[k+1 : vEnd-1])
			if label == "__name__" {
				if op == "=" {
					sel.name = value
				} else {
					sel.nameRegex = value
				}
			} else {
				sel.labels = append(sel.labels, label)
			}
			k = vEnd
		}
		return end, nil
	}

	for i < len(s) {
		r := s[i]
		switch {
		case unicode.IsSpace(r):
			i++
		case r == '"' || r == '\'' || r == '`':
			j, err := skipString(i)
			if err != nil {
				return nil, err
			}
			i = j
		case r == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case r == '$': // a Grafana variable
			i++
			if i < len(s) && s[i] == '{' {
				j, err := closing(i, '{', '}')
				if err != nil {
					return nil, err
				}
				i = j
			}
			for i < len(s) && isIdent(s[i]) {
				i++
			}
		case r == '[':
			j, err := closing(i, '[', ']')
			if err != nil {
				return nil, err
			}
			i = j
		case r == '{':
			var sel selector
			j, err := matchers(i, &sel)
			if err != nil {
				return nil, err
			}
			if sel.name == "" && sel.nameRegex == "" {
				return nil, fmt.Errorf("%q: a selector without a metric name", expr)
			}
			out = append(out, sel)
			i = j
		case unicode.IsDigit(r) || (r == '.' && i+1 < len(s) && unicode.IsDigit(s[i+1])):
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(r):
			start := i
			for i < len(s) && isIdent(s[i]) {
				i++
			}
			word := string(s[start:i])
			next := skipSpace(i)
			called := next < len(s) && s[next] == '('
			switch {
			case called && slices.Contains(promqlLabelClauses, word):
				j, err := closing(next, '(', ')')
				if err != nil {
					return nil, err
				}
				i = j
			case called || slices.Contains(promqlKeywords, word):
				// a function, an aggregation or a keyword
			default:
				sel := selector{name: word}
				if next < len(s) && s[next] == '{' {
					j, err := matchers(next, &sel)
					if err != nil {
						return nil, err
					}
					i = j
				}
				out = append(out, sel)
			}
		default:
			if r == '(' {
				depth++
			} else if r == ')' {
				depth--
			}
			if depth < 0 {
				return nil, fmt.Errorf("%q: unbalanced )", expr)
			}
			i++
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("%q: unbalanced (", expr)
	}
	return out, nil
}
