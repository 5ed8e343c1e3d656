package databases

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/gitsource"
)

// MaxEntries bounds the list: past it the engines' own limits (Argo's workflow size
// and template depth, Tekton's matrix of 256) have long been reached, and a list
// that long is more likely a mistake than a plan.
const MaxEntries = 1000

// maxProblems is how many problems one message names; the rest are counted.
const maxProblems = 20

// Entry is one database of the list, with the defaults applied. Every field is
// always present in its JSON form, so that a workflow reading {{item.<key>}} never
// meets a missing key.
type Entry struct {
	Name            string `json:"name"`
	Secret          string `json:"secret"`
	Key             string `json:"key"`
	Dir             string `json:"dir"`
	GitURL          string `json:"git-url"`
	GitRevision     string `json:"git-revision"`
	MigrationsImage string `json:"migrations-image"`
	Role            string `json:"role"`
	Table           string `json:"table"`
	To              string `json:"to"`
}

// Defaults are the run's single-database parameters, which an entry's missing keys
// take.
type Defaults struct {
	Secret          string // database-secret
	Key             string // database-secret-key
	Dir             string // migrations-dir
	GitURL          string // git-url
	GitRevision     string // git-revision
	MigrationsImage string // migrations-image
	Role            string // migrate-role
	Table           string // table
	To              string // to
}

// Keys are the keys an entry may have, in the order the messages list them.
var Keys = []string{"name", "secret", "key", "dir", "git-url", "git-revision", "migrations-image", "role", "table", "to"}

// nameRE: a name shows in logs, results and workflow node names.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,126}$`)

// problems collects what is wrong with the list, each naming its entry.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// message joins the problems into one line: every one up to maxProblems, then a count.
func (p problems) message() string {
	shown := p
	more := 0
	if len(shown) > maxProblems {
		more = len(shown) - maxProblems
		shown = shown[:maxProblems]
	}
	s := strings.Join(shown, "; ")
	if more > 0 {
		s += fmt.Sprintf("; and %d more", more)
	}
	return s
}

// where names an entry in a message: its position from 1, and its name once known.
func where(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("entry %d", i+1)
	}
	return fmt.Sprintf("entry %d (%s)", i+1, name)
}

// Parse reads the databases parameter and applies the defaults. An empty (or
// all-blank) raw is no list at all: Parse returns nil, nil, and the run is a
// single-database run. Anything else that is not a usable list is a usage error
// (failure.Usage) naming every bad entry.
func Parse(raw string, d Defaults) ([]Entry, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	elems, err := splitArray(raw)
	if err != nil {
		return nil, failure.Usagef("databases: %v; give a JSON list of objects, e.g. [{\"secret\": \"orders-db\"}, {\"secret\": \"billing-db\"}]", err)
	}
	if len(elems) == 0 {
		return nil, failure.Usagef("databases: the list is empty; name at least one database, or leave databases empty to migrate database-secret alone")
	}
	if len(elems) > MaxEntries {
		return nil, failure.Usagef("databases: %d entries, more than the %d one run takes; split the list into several runs", len(elems), MaxEntries)
	}
	var bad problems
	entries := make([]Entry, len(elems))
	given := make([]map[string]string, len(elems))
	for i, el := range elems {
		fields, errs := readObject(el)
		for _, e := range errs {
			bad.add("%s: %s", where(i, ""), e)
		}
		given[i] = fields
	}
	if len(bad) > 0 {
		return nil, failure.Usagef("databases: %s", bad.message())
	}
	// How many entries use each Secret, for the default names.
	perSecret := map[string]int{}
	for i, f := range given {
		entries[i] = withDefaults(f, d)
		perSecret[entries[i].Secret]++
	}
	for i := range entries {
		e := &entries[i]
		if _, ok := given[i]["name"]; !ok {
			e.Name = e.Secret
			if perSecret[e.Secret] > 1 {
				e.Name = e.Secret + "/" + e.Key
			}
		}
		for _, msg := range e.check(given[i], d) {
			bad.add("%s: %s", where(i, e.Name), msg)
		}
	}
	// Duplicates: one database named twice, or two entries with one name.
	byDB := map[[2]string]int{}
	byName := map[string]int{}
	for i, e := range entries {
		if e.Secret != "" && e.Key != "" {
			db := [2]string{e.Secret, e.Key}
			if j, ok := byDB[db]; ok {
				bad.add("%s and %s are the same database (Secret %s, key %s); name it once", where(j, entries[j].Name), where(i, e.Name), e.Secret, e.Key)
				continue // their names are then alike too: said once is enough
			}
			byDB[db] = i
		}
		if e.Name != "" {
			if j, ok := byName[e.Name]; ok {
				bad.add("%s and %s have the same name; give one of them another name", where(j, ""), where(i, e.Name))
			} else {
				byName[e.Name] = i
			}
		}
	}
	if len(bad) > 0 {
		return nil, failure.Usagef("databases: %s", bad.message())
	}
	return entries, nil
}

// withDefaults builds the entry from the keys given and the run's parameters.
func withDefaults(f map[string]string, d Defaults) Entry {
	pick := func(key, def string) string {
		if v, ok := f[key]; ok {
			return v
		}
		return def
	}
	e := Entry{
		Name:   f["name"],
		Secret: pick("secret", d.Secret),
		Key:    pick("key", d.Key),
		Dir:    pick("dir", d.Dir),
		Role:   pick("role", d.Role),
		Table:  pick("table", d.Table),
		To:     pick("to", d.To),
	}
	// The source is one piece: an entry naming its own repository or image takes
	// none of the run's source parameters.
	_, ownGit := f["git-url"]
	_, ownImage := f["migrations-image"]
	if ownGit || ownImage {
		e.GitURL, e.GitRevision, e.MigrationsImage = f["git-url"], f["git-revision"], f["migrations-image"]
	} else {
		e.GitURL, e.GitRevision, e.MigrationsImage = d.GitURL, pick("git-revision", d.GitRevision), d.MigrationsImage
	}
	return e
}

// check returns what is wrong with the entry, once its defaults are applied.
func (e Entry) check(given map[string]string, d Defaults) []string {
	var out []string
	if e.Secret == "" {
		out = append(out, "no secret, and database-secret is empty; set \"secret\" to the Secret holding the database URL")
	} else if errs := validation.IsDNS1123Subdomain(e.Secret); len(errs) > 0 {
		out = append(out, fmt.Sprintf("secret %q is not a valid Secret name (lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)", e.Secret))
	}
	if e.Key == "" {
		out = append(out, "key is empty; set \"key\" to the key of the Secret that holds the URL")
	} else if errs := validation.IsConfigMapKey(e.Key); len(errs) > 0 {
		out = append(out, fmt.Sprintf("key %q is not a valid Secret key (letters, digits, '-', '_' and '.', at most 253 characters)", e.Key))
	}
	if _, ok := given["name"]; ok && !nameRE.MatchString(e.Name) {
		out = append(out, fmt.Sprintf("name %q is not valid: letters, digits, '.', '_', '-' and '/', starting with a letter or digit, at most 127 characters", e.Name))
	}
	if e.Dir == "" {
		out = append(out, "dir is empty, and so is migrations-dir; set \"dir\" to the directory of the migrations")
	}
	if e.Table == "" {
		out = append(out, "table is empty; set \"table\" to goose's version table, or leave it out")
	} else if !dbconn.ValidVersionTable(e.Table) {
		out = append(out, fmt.Sprintf("table %q is not valid: use a lowercase name or schema.name (letters, digits, _; the name at most %d characters), or leave it out", e.Table, dbconn.MaxTableName))
	}
	if strings.EqualFold(strings.TrimSpace(e.Role), "none") {
		// as migrate refuses --role none: SET ROLE NONE is the login user itself
		out = append(out, fmt.Sprintf("role %q is not a role: SET ROLE NONE means the login user itself; leave role out for that, or give the role that owns the schema", e.Role))
	}
	if given["git-url"] != "" && given["migrations-image"] != "" {
		out = append(out, "sets both git-url and migrations-image; the migrations come from one of them")
	}
	if e.GitURL != "" {
		// A token in the URL would be published in the run's entries result.
		if err := (gitsource.Remote{URL: e.GitURL}).Validate(); err != nil {
			out = append(out, "git-url: "+err.Error())
		}
	}
	if e.To != "" {
		if v, err := strconv.ParseInt(e.To, 10, 64); err != nil || v <= 0 || strings.TrimLeft(e.To, "0123456789") != "" {
			out = append(out, fmt.Sprintf("to %q is not a version: give the migration version to stop at (a whole number above 0), or leave it out", e.To))
		}
	}
	if e.GitRevision != "" && e.GitURL == "" {
		out = append(out, "git-revision without git-url; set \"git-url\" too, or leave git-revision out")
	}
	for _, k := range Keys {
		if v, ok := given[k]; ok && strings.IndexFunc(v, unicode.IsControl) >= 0 {
			out = append(out, fmt.Sprintf("%s holds a control character (a newline, a tab...)", k))
		}
	}
	return out
}

// splitArray returns the elements of a JSON array, each still encoded, and refuses
// anything else: another JSON value, a syntax error, or data after the array.
func splitArray(raw string) ([]json.RawMessage, error) {
	dec := json.NewDecoder(strings.NewReader(raw))
	var elems []json.RawMessage
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not valid JSON (%s)", jsonError(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fmt.Errorf("not a JSON list but %s", describeToken(tok))
	}
	for dec.More() {
		var el json.RawMessage
		if err := dec.Decode(&el); err != nil {
			return nil, fmt.Errorf("not valid JSON after entry %d (%s)", len(elems), jsonError(err))
		}
		elems = append(elems, el)
		if len(elems) > MaxEntries {
			return elems, nil // counted by the caller; the rest need not be read
		}
	}
	if _, err := dec.Token(); err != nil { // the closing ]
		return nil, fmt.Errorf("not valid JSON (%s)", jsonError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("something follows the list")
	}
	return elems, nil
}

// readObject reads one entry: a JSON object whose keys are Keys, each at most once,
// with string values.
func readObject(el json.RawMessage) (map[string]string, []string) {
	dec := json.NewDecoder(bytes.NewReader(el))
	tok, err := dec.Token()
	if err != nil {
		return nil, []string{"not valid JSON"}
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, []string{fmt.Sprintf("not an object but %s; write {\"secret\": \"...\"}", describeToken(tok))}
	}
	fields := map[string]string{}
	seen := map[string]bool{}
	var errs []string
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, []string{"not valid JSON"}
		}
		key, _ := kt.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, []string{"not valid JSON"}
		}
		known := false
		for _, k := range Keys {
			known = known || k == key
		}
		var s string
		switch {
		case !known:
			errs = append(errs, fmt.Sprintf("unknown key %q (the keys are %s)", key, strings.Join(Keys, ", ")))
		case seen[key]:
			errs = append(errs, fmt.Sprintf("key %q given twice", key))
		case json.Unmarshal(v, &s) != nil || len(v) == 0 || v[0] != '"':
			errs = append(errs, fmt.Sprintf("%s is %s, not a string", key, describeRaw(v)))
		default:
			fields[key] = s
		}
		seen[key] = true
	}
	return fields, errs
}

// describeToken names a JSON token's kind for a message, never its value (a value
// in the wrong place may be something secret pasted by mistake).
func describeToken(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			return "an object"
		}
		return "a list"
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "something else"
}

func describeRaw(v json.RawMessage) string {
	dec := json.NewDecoder(bytes.NewReader(v))
	tok, err := dec.Token()
	if err != nil {
		return "not valid JSON"
	}
	return describeToken(tok)
}

// jsonError says where the JSON broke without quoting the input.
func jsonError(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "it ends too early"
	}
	return "it does not parse"
}

// Secrets returns the distinct Secret names of the entries, sorted: the order in
// which a run takes their locks.
func Secrets(entries []Entry) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range entries {
		if !seen[e.Secret] {
			seen[e.Secret] = true
			out = append(out, e.Secret)
		}
	}
	sort.Strings(out)
	return out
}
