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
		bodies := 0 // routine bodies opened and not yet closed by their END
		for _, c := range cmds {
			if c.opensBody {
				bodies++
			}
			cmd := endingCommand(c.words)
			if cmd == "END" && bodies > 0 {
				bodies-- // the END closing a BEGIN ATOMIC body
				continue
			}
			if cmd != "" {
				return cmd
			}
		}
	}
	if !split {
		return Unsplittable
	}
	return ""
}

// CopyFromClient reports whether a command of sql is COPY ... FROM STDIN,
// which makes the server wait for data the client sends in the COPY protocol:
// a migration's statement is sent as a query, with no data after it, so the
// session would wait until it is killed (statement_timeout does not end that
// wait). Commands are cut as EndsTransaction cuts them, in either reading of
// standard_conforming_strings; text that cannot be cut is false (Unsplittable
// is EndsTransaction's to report).
func CopyFromClient(sql string) bool {
	for _, off := range []bool{false, true} {
		cmds, ok := lexCommands(sql, off)
		for _, c := range cmds {
			if ok && c.copyIn {
				return true
			}
		}
	}
	return false
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
		// PREPARE transaction AS ... prepares a statement named transaction.
		if len(words) > 1 && words[1] == "TRANSACTION" && (len(words) < 3 || words[2] != "AS" && words[2] != "(") {
			return "PREPARE TRANSACTION"
		}
	}
	return ""
}

// keptWords is how many leading tokens of a command endingCommand needs.
const keptWords = 3

// command is the text between two semicolons PostgreSQL's lexer sees: its
// first tokens, and whether it opens a SQL-standard routine body.
type command struct {
	words     []string
	opensBody bool
	copyIn    bool // COPY ... FROM STDIN (outside parentheses)
}

// lexCommands cuts sql at every semicolon PostgreSQL's lexer sees, keeping each
// piece's first tokens; ok is false when a quote, dollar quote or block comment
// is left open. scsOff reads plain strings with standard_conforming_strings
// off: a backslash escapes the next byte.
//
// A CREATE FUNCTION or PROCEDURE with a SQL-standard body (BEGIN ATOMIC ...
// END) spans several pieces, the server's grammar (not its lexer) keeping the
// semicolons inside: its first piece opensBody, and the piece starting with END
// that closes it is matched by EndsTransaction. Nothing else in a body can
// start a piece with END (its statements are DML and queries; the server
// refuses COMMIT, ROLLBACK and the like in one with 0A000), so no CASE ... END
// has to be followed, whose CASE and END may also be column labels (SELECT 1
// AS case, t.end, even SELECT 1 case), which a keyword count cannot tell.
func lexCommands(s string, scsOff bool) (cmds []command, ok bool) {
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
		case c == ';':
			body.token(";")
			if len(cur) > 0 {
				cmds = append(cmds, command{words: cur, opensBody: body.opened, copyIn: body.copyIn})
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
	body.token(";")
	if len(cur) > 0 {
		cmds = append(cmds, command{words: cur, opensBody: body.opened, copyIn: body.copyIn})
	}
	return cmds, true
}

// routineBody reads one piece of text between semicolons (and whether it is a
// COPY ... FROM STDIN): opened when it is
// the start of a CREATE [OR REPLACE] FUNCTION or PROCEDURE whose BEGIN ATOMIC
// body (outside parentheses: a parameter named begin of a type named atomic
// is none) has a statement, so that its END starts a later piece. An empty body
// (BEGIN ATOMIC END) closes in the piece itself. token(";") ends the piece.
type routineBody struct {
	leading []string // the piece's first words, up to the routine's kind
	routine bool     // a CREATE [OR REPLACE] FUNCTION or PROCEDURE command
	parens  int
	prev    string
	atomic  bool // just after BEGIN ATOMIC: the next token tells an empty body
	opened  bool
	copyIn  bool // a COPY whose FROM STDIN is outside parentheses
}

func (b *routineBody) token(tok string) {
	if len(b.leading) < 4 && tok != ";" {
		b.leading = append(b.leading, tok)
		b.routine = isRoutineCreate(b.leading)
	}
	prev := b.prev
	b.prev = tok
	switch tok {
	case "(":
		b.parens++
	case ")":
		b.parens--
	}
	if len(b.leading) > 0 && b.leading[0] == "COPY" && tok == "STDIN" && prev == "FROM" && b.parens == 0 {
		b.copyIn = true
	}
	if !b.routine || b.opened {
		return
	}
	if b.atomic {
		b.atomic = false
		b.opened = tok != "END"
		return
	}
	if tok == "ATOMIC" {
		b.atomic = prev == "BEGIN" && b.parens == 0
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
