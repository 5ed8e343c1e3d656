package gitsource

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// maxRevision bounds a revision's length: refs are files on the server, so a
// longer name cannot exist (and would fill every message it is named in).
const maxRevision = 1024

// ValidateRevision checks that revision can name a tag or branch (git
// check-ref-format's rules) or is a full SHA; "" (the remote HEAD) is valid.
// Relative forms (HEAD~1, v1^{}, @{-1}) and patterns are refused, and so is white
// space, which a copy and paste adds more often than a tag holds it. Usage errors.
func ValidateRevision(revision string) error {
	bad := func(why string) error {
		return failure.Usagef("%w %s: %s; give a tag, a branch or a full 40-character commit SHA", ErrInvalidRevision, shortQuote(revision), why)
	}
	switch {
	case revision == "" || isFullSHA(revision):
		return nil
	case len(revision) > maxRevision:
		return bad("it is longer than any ref can be")
	case !utf8.ValidString(revision):
		return bad("it is not UTF-8")
	case strings.TrimSpace(revision) != revision || strings.ContainsAny(revision, " \t"):
		return bad("it holds white space (copied with the text around it?)")
	case strings.IndexFunc(revision, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return bad("it holds control characters")
	case strings.ContainsAny(revision, "~^"), strings.Contains(revision, "@{"):
		return bad("relative revisions (~, ^, @{...}) are not supported")
	case strings.ContainsAny(revision, ":?*[\\"):
		return bad(`a ref name holds none of : ? * [ \`)
	case revision == "@", strings.HasPrefix(revision, "-"), strings.HasPrefix(revision, "/"), strings.HasSuffix(revision, "/"),
		strings.HasSuffix(revision, "."), strings.Contains(revision, "//"), strings.Contains(revision, ".."):
		return bad("it is not a valid ref name")
	}
	for _, part := range strings.Split(revision, "/") {
		if strings.HasPrefix(part, ".") || strings.HasSuffix(part, ".lock") {
			return bad("it is not a valid ref name")
		}
	}
	return nil
}

// shortQuote quotes s for a message, cut to 100 characters.
func shortQuote(s string) string {
	const max = 100
	if len(s) <= max {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:max]) + "..."
}
