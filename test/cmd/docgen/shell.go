package main

import (
	"regexp"
	"strings"
)

// A small reader of the shell snippets in the documentation: enough to find each
// simple command and its words, so the tests can check them against the repository.
// It is not a shell: it knows quotes, $( ), line continuations, comments, here-documents,
// the command separators and redirections, which is what the snippets use.

// Command is one simple command found in a snippet.
type Command struct {
	Line  int      // 1-based line of the snippet where it starts
	Words []string // quotes removed; $VAR and $( ) left as written
	Env   []string // NAME=value assignments before the command word
}

// Name is the command word ("" for a bare assignment).
func (c Command) Name() string {
	if len(c.Words) == 0 {
		return ""
	}
	return c.Words[0]
}

var heredocRE = regexp.MustCompile(`<<-?\s*['"]?([A-Za-z_][A-Za-z0-9_]*)['"]?`)

// keywords that may precede a command word.
var shellKeywords = map[string]bool{"if": true, "then": true, "else": true, "elif": true, "fi": true,
	"do": true, "done": true, "while": true, "until": true, "for": true, "{": true, "}": true, "!": true, "time": true}

// ParseShell returns the simple commands of a snippet, including those inside $( ).
func ParseShell(src string) []Command {
	var out []Command
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		start := i + 1
		line := lines[i]
		// Line continuations.
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, `\`) + " " + lines[i]
		}
		// A here-document's body is data, not commands.
		if m := heredocRE.FindStringSubmatch(stripComment(line)); m != nil {
			for i+1 < len(lines) && strings.TrimSpace(lines[i+1]) != m[1] {
				i++
			}
			i++ // the terminator
		}
		for _, seg := range splitCommands(stripComment(line)) {
			out = append(out, parseSimple(seg, start)...)
		}
	}
	return out
}

// stripComment removes a # comment: a # that starts a word outside quotes.
func stripComment(s string) string {
	var sq, dq bool
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && !sq:
			i++
		case c == '\'' && !dq:
			sq = !sq
		case c == '"' && !sq:
			dq = !dq
		case c == '#' && !sq && !dq && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t'):
			return s[:i]
		}
	}
	return s
}

// splitCommands splits a line at && || ; | & outside quotes and $( ).
func splitCommands(s string) []string {
	var out []string
	var sq, dq bool
	depth, last := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && !sq:
			i++
		case c == '\'' && !dq:
			sq = !sq
		case c == '"' && !sq:
			dq = !dq
		case sq:
		case c == '$' && i+1 < len(s) && s[i+1] == '(':
			depth++
			i++
		case c == '(' && depth > 0:
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0 && !dq && (c == ';' || c == '|' || c == '&'):
			// 2>&1 and >& are redirections, not separators.
			if c == '&' && i > 0 && (s[i-1] == '>' || s[i-1] == '<') {
				continue
			}
			out = append(out, s[last:i])
			if i+1 < len(s) && (s[i+1] == '&' || s[i+1] == '|') {
				i++
			}
			last = i + 1
		}
	}
	return append(out, s[last:])
}

// parseSimple reads one command segment and the commands in its $( ).
func parseSimple(seg string, line int) []Command {
	var out []Command
	words, inner := splitWords(seg)
	for _, in := range inner {
		for _, s := range splitCommands(in) {
			out = append(out, parseSimple(s, line)...)
		}
	}
	for len(words) > 0 && shellKeywords[words[0]] {
		words = words[1:]
	}
	c := Command{Line: line}
	for len(words) > 0 && assignmentRE.MatchString(words[0]) {
		c.Env = append(c.Env, words[0])
		words = words[1:]
	}
	// Drop redirections.
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == ">" || w == ">>" || w == "<" || w == "2>" || w == "&>" {
			i++
			continue
		}
		if strings.HasPrefix(w, ">") || strings.HasPrefix(w, "<") || strings.HasPrefix(w, "2>") {
			continue
		}
		c.Words = append(c.Words, w)
	}
	if len(c.Words) > 0 || len(c.Env) > 0 {
		out = append(out, c)
	}
	return out
}

var assignmentRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// splitWords splits at blanks outside quotes, removes the quotes, and returns the
// bodies of the $( ) it met (left in the words as written).
func splitWords(s string) (words []string, inner []string) {
	var cur strings.Builder
	var sq, dq, in bool
	flush := func() {
		if in {
			words = append(words, cur.String())
		}
		cur.Reset()
		in = false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && !sq && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			in = true
		case c == '\'' && !dq:
			sq = !sq
			in = true
		case c == '"' && !sq:
			dq = !dq
			in = true
		case !sq && c == '$' && i+1 < len(s) && s[i+1] == '(':
			end := matchParen(s, i+1)
			inner = append(inner, s[i+2:end])
			cur.WriteString(s[i:min(end+1, len(s))])
			in = true
			i = end
		case !sq && !dq && (c == ' ' || c == '\t'):
			flush()
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	flush()
	return words, inner
}

// matchParen returns the index of the ) closing the ( at open, or len(s)-1.
func matchParen(s string, open int) int {
	depth := 0
	var sq, dq bool
	for i := open; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && !sq:
			i++
		case c == '\'' && !dq:
			sq = !sq
		case c == '"' && !sq:
			dq = !dq
		case sq || dq:
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return len(s) - 1
}
