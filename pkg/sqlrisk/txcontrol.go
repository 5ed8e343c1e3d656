package sqlrisk

import "strings"

// Unsplittable is what EndsTransaction returns for a statement whose text
// cannot be cut into its commands for sure: a quote, dollar quote or block
// comment is left open however standard_conforming_strings is set, so a COMMIT
// in it could not be told from a COMMIT inside a literal.
const Unsplittable = "text that cannot be split into its commands (a quote, dollar quote or comment left open)"

// EndsTransaction names the first command of sql that ends the transaction it
// runs in ("COMMIT", "END", "ROLLBACK", "ABORT", "PREPARE TRANSACTION"), or ""
// when none does. goose runs a migration without -- +goose NO TRANSACTION in one
// transaction: such a command commits (or undoes) the statements before it on
// its own, so a failure after it can no longer be undone, and a retry would run
// them twice. ROLLBACK TO SAVEPOINT keeps the transaction and is not one.
//
// sql is read the way PostgreSQL's lexer reads it (comments, nested block
// comments, quoted names, E and B strings, dollar quotes, continued strings),
// every command of it, once with standard_conforming_strings on and once off,
// as a migration may turn it off (SET standard_conforming_strings = off, as old
// pg_dump output does) and then quote, backslash, quote, quote is a whole
// string: a command that ends the transaction in either reading is named. A
// reading that leaves a quote open is one the server would reject without
// running anything; when both do, the text cannot be split and Unsplittable is
// returned. It does not start the parser: preparse runs it on every pending
// file.
func EndsTransaction(sql string) string {
	readings := []bool{false}
	if strings.IndexByte(sql, '\\') >= 0 {
		readings = append(readings, true) // backslashes read differently when off
	}
	split := false
	for _, off := range readings {
		cmds, ok := lexCommands(sql, off)
		if !ok {
			continue
		}
		split = true
		for _, words := range cmds {
			if cmd := endingCommand(words); cmd != "" {
				return cmd
			}
		}
	}
	if !split {
		return Unsplittable
	}
	return ""
}

// endingCommand names the transaction-ending command whose first tokens are
// words (upper-cased; a literal or punctuation is kept as its first byte).
func endingCommand(words []string) string {
	if len(words) == 0 {
		return ""
	}
	switch words[0] {
	case "COMMIT", "END", "ABORT":
		return words[0]
	case "ROLLBACK":
		// ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name keeps it.
		rest := words[1:]
		if len(rest) > 0 && (rest[0] == "WORK" || rest[0] == "TRANSACTION") {
			rest = rest[1:]
		}
		if len(rest) > 0 && rest[0] == "TO" {
			return ""
		}
		return "ROLLBACK"
	case "PREPARE":
		if len(words) > 1 && words[1] == "TRANSACTION" {
			return "PREPARE TRANSACTION"
		}
	}
	return ""
}

// keptWords is how many leading tokens of a command endingCommand needs.
const keptWords = 3

// lexCommands cuts sql into its commands at the semicolons PostgreSQL's lexer
// sees, keeping each command's first tokens; ok is false when a quote, dollar
// quote or block comment is left open. scsOff reads plain strings with
// standard_conforming_strings off: a backslash escapes the next byte.
func lexCommands(s string, scsOff bool) (cmds [][]string, ok bool) {
	var (
		cur  []string
		body routineBody
	)
	add := func(tok string) {
		if len(cur) < keptWords {
			cur = append(cur, tok)
		}
		body.token(tok)
	}
	n := len(s)
	for i := 0; i < n; {
		c := s[i]
		switch {
		case c == ';' && body.depth > 0:
			i++ // inside a BEGIN ATOMIC body: the command goes on
		case c == ';':
			if len(cur) > 0 {
				cmds = append(cmds, cur)
			}
			cur, body = nil, routineBody{}
			i++
		case isSpace(c):
			i++
		case c == '-' && i+1 < n && s[i+1] == '-':
			i = skipLineComment(s, i)
		case c == '/' && i+1 < n && s[i+1] == '*':
			if i, ok = skipBlockComment(s, i); !ok {
				return nil, false
			}
		case c == '\'':
			mode := byte('q')
			if scsOff {
				mode = 'e'
			}
			if i, ok = skipString(s, i+1, mode); !ok {
				return nil, false
			}
			add("'")
		case c == '"':
			if i, ok = skipQuotedName(s, i+1); !ok {
				return nil, false
			}
			add(`"`)
		case c == '$':
			if tag, isTag := dollarTag(s[i:]); isTag {
				end := strings.Index(s[i+len(tag):], tag)
				if end < 0 {
					return nil, false
				}
				i += len(tag) + end + len(tag)
			} else { // a parameter ($1) or a stray $
				for i++; i < n && s[i] >= '0' && s[i] <= '9'; i++ {
				}
			}
			add("$")
		case identStart(c):
			j := i + 1
			for j < n && identCont(s[j]) {
				j++
			}
			word := s[i:j]
			switch {
			case j < n && s[j] == '\'' && len(word) == 1 && (c == 'E' || c == 'e'):
				// E'...': backslash escapes whatever the setting.
				if i, ok = skipString(s, j+1, 'e'); !ok {
					return nil, false
				}
				add("'")
			case j < n && s[j] == '\'' && len(word) == 1 && (c == 'B' || c == 'b' || c == 'X' || c == 'x'):
				// B'...', X'...': end at the first quote, no doubling.
				if i, ok = skipString(s, j+1, 'b'); !ok {
					return nil, false
				}
				add("'")
			case j+1 < n && s[j] == '&' && s[j+1] == '\'' && len(word) == 1 && (c == 'U' || c == 'u'):
				// U&'...': quotes doubled, backslash not an escape (the
				// server refuses it with standard_conforming_strings off).
				if i, ok = skipString(s, j+2, 'q'); !ok {
					return nil, false
				}
				add("'")
			default:
				add(asciiUpper(word))
				i = j
			}
		case c >= '0' && c <= '9':
			// A number; letters after it are read as a name of their own
			// (PostgreSQL before 15 reads 1a$b$ as 1 and a$b$).
			for i < n && (s[i] >= '0' && s[i] <= '9' || s[i] == '.' || s[i] == '_') {
				i++
			}
			add("0")
		default:
			add(s[i : i+1])
			i++
		}
	}
	if len(cur) > 0 {
		cmds = append(cmds, cur)
	}
	return cmds, true
}

// routineBody follows a CREATE [OR REPLACE] FUNCTION or PROCEDURE command
// through its SQL-standard body (BEGIN ATOMIC ... END), whose semicolons do not
// end the command: depth counts the BEGIN ATOMIC, and the CASE inside it, that
// an END has not closed yet. Only BEGIN followed by ATOMIC opens a body, so a
// routine named begin cannot hide the commands after it. Commands of any other
// kind never get a depth.
type routineBody struct {
	leading []string // the command's first words, up to the routine's kind
	routine bool     // a CREATE [OR REPLACE] FUNCTION or PROCEDURE command
	prev    string
	depth   int
}

func (b *routineBody) token(tok string) {
	if len(b.leading) < 4 {
		b.leading = append(b.leading, tok)
		b.routine = isRoutineCreate(b.leading)
	}
	prev := b.prev
	b.prev = tok
	switch {
	case !b.routine:
	case tok == "ATOMIC" && prev == "BEGIN", tok == "CASE" && b.depth > 0:
		b.depth++
	case tok == "END" && b.depth > 0:
		b.depth--
	}
}

// isRoutineCreate says whether words start CREATE [OR REPLACE] FUNCTION or
// PROCEDURE.
func isRoutineCreate(w []string) bool {
	kind := func(i int) bool { return len(w) > i && (w[i] == "FUNCTION" || w[i] == "PROCEDURE") }
	return len(w) > 1 && w[0] == "CREATE" && (kind(1) || len(w) > 2 && w[1] == "OR" && w[2] == "REPLACE" && kind(3))
}

// skipString returns the index after the string literal whose body starts at
// i, following continuations (a closing quote, white space with a newline, an
// opening quote) in the same mode: 'q' doubled quotes only, 'e' also backslash
// escapes, 'b' (bit strings) neither.
func skipString(s string, i int, mode byte) (int, bool) {
	n := len(s)
	for i < n {
		switch c := s[i]; {
		case c == '\\' && mode == 'e':
			i += 2
		case c == '\'' && mode != 'b' && i+1 < n && s[i+1] == '\'':
			i += 2
		case c == '\'':
			if j := continuation(s, i+1); j >= 0 {
				i = j + 1
				continue
			}
			return i + 1, true
		default:
			i++
		}
	}
	return n, false
}

// continuation returns the index of the quote that continues a string literal
// closed just before i (white space holding a newline, -- comments allowed, then
// a quote), or -1.
func continuation(s string, i int) int {
	n := len(s)
	newline := false
	for i < n {
		switch c := s[i]; {
		case c == '\n' || c == '\r':
			newline = true
			i++
		case isSpace(c):
			i++
		case c == '-' && i+1 < n && s[i+1] == '-':
			i = skipLineComment(s, i)
			if i >= n {
				return -1 // a comment needs its newline here
			}
		case c == '\'' && newline:
			return i
		default:
			return -1
		}
	}
	return -1
}

// skipQuotedName returns the index after the "quoted name" whose body starts
// at i.
func skipQuotedName(s string, i int) (int, bool) {
	for n := len(s); i < n; i++ {
		if s[i] == '"' {
			if i+1 < n && s[i+1] == '"' {
				i++
				continue
			}
			return i + 1, true
		}
	}
	return len(s), false
}

// skipLineComment returns the index of the newline (\n or \r) ending the --
// comment at i, or len(s).
func skipLineComment(s string, i int) int {
	for i < len(s) && s[i] != '\n' && s[i] != '\r' {
		i++
	}
	return i
}

// skipBlockComment returns the index after the block comment at i; PostgreSQL
// nests them.
func skipBlockComment(s string, i int) (int, bool) {
	depth := 0
	for n := len(s); i < n; {
		switch {
		case s[i] == '/' && i+1 < n && s[i+1] == '*':
			depth++
			i += 2
		case s[i] == '*' && i+1 < n && s[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i, true
			}
		default:
			i++
		}
	}
	return len(s), false
}

// isSpace: PostgreSQL's white space.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// identStart, identCont: bytes that start and continue an unquoted name.
func identStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func identCont(c byte) bool { return identStart(c) || c == '$' || c >= '0' && c <= '9' }

// asciiUpper upper-cases ASCII letters only, as PostgreSQL folds keywords.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
