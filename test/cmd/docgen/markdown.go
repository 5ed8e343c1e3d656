package main

import (
	"regexp"
	"strings"
)

// Illustrative marks a fenced block whose commands are not checked: put it on the
// line just before the fence. Blocks of language text are never checked either
// (UI steps, log lines, messages).
const Illustrative = "<!-- docs:illustrative -->"

// Block is one fenced code block of a Markdown file.
type Block struct {
	Lang         string // first word of the info string
	Line         int    // 1-based line of the opening fence
	Body         string
	Illustrative bool
}

// Blocks returns the fenced code blocks of a Markdown document.
func Blocks(md string) []Block {
	var out []Block
	lines := strings.Split(md, "\n")
	prev := ""
	for i := 0; i < len(lines); i++ {
		t := strings.TrimSpace(lines[i])
		fence := ""
		switch {
		case strings.HasPrefix(t, "```"):
			fence = "```"
		case strings.HasPrefix(t, "~~~"):
			fence = "~~~"
		}
		if fence == "" {
			if t != "" {
				prev = t
			}
			continue
		}
		indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
		info := strings.Fields(strings.TrimPrefix(t, fence))
		b := Block{Line: i + 1, Illustrative: prev == Illustrative}
		if len(info) > 0 {
			b.Lang = info[0]
		}
		var body []string
		for i++; i < len(lines); i++ {
			if strings.HasPrefix(strings.TrimSpace(lines[i]), fence) {
				break
			}
			l := lines[i]
			// Blocks inside list items are indented; remove the fence's indent.
			if len(l) >= indent && strings.TrimSpace(l[:indent]) == "" {
				l = l[indent:]
			}
			body = append(body, l)
		}
		b.Body = strings.Join(body, "\n")
		out = append(out, b)
		prev = ""
	}
	return out
}

// Link is one inline Markdown link outside code.
type Link struct {
	Target string
	Line   int
}

var linkRE = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// Links returns the inline links of a Markdown document, skipping code blocks and
// code spans.
func Links(md string) []Link {
	var out []Link
	inFence := false
	for i, l := range strings.Split(md, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~") {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		l = codeSpanRE.ReplaceAllString(l, "")
		for _, m := range linkRE.FindAllStringSubmatch(l, -1) {
			out = append(out, Link{Target: m[1], Line: i + 1})
		}
	}
	return out
}

var codeSpanRE = regexp.MustCompile("`[^`]*`")

// Anchors returns the GitHub anchors of a Markdown document's headings.
func Anchors(md string) map[string]bool {
	out := map[string]bool{}
	inFence := false
	for _, l := range strings.Split(md, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~") {
			inFence = !inFence
			continue
		}
		if inFence || !strings.HasPrefix(t, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(t, "#"))
		out[slug(h)] = true
	}
	return out
}

// slug is GitHub's heading anchor: lower case, punctuation dropped except - and _,
// spaces to -.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r > 127:
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}
