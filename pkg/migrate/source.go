package migrate

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/pressly/goose/v3"
)

// Source is one migration file.
type Source struct {
	Version int64
	File    string // base name, e.g. 00003_add_index.sql
	HasDown bool   // has a '-- +goose Down' section with at least one statement
	NoTx    bool   // '-- +goose NO TRANSACTION'
}

// Sources are a directory's migrations, sorted by version.
type Sources []Source

// Versions lists the versions in order.
func (s Sources) Versions() []int64 {
	out := make([]int64, len(s))
	for i, m := range s {
		out[i] = m.Version
	}
	return out
}

// Get returns the migration with version v.
func (s Sources) Get(v int64) (Source, bool) {
	i := sort.Search(len(s), func(i int) bool { return s[i].Version >= v })
	if i < len(s) && s[i].Version == v {
		return s[i], true
	}
	return Source{}, false
}

// Latest is the highest version, 0 when there is none.
func (s Sources) Latest() int64 {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1].Version
}

// ScanDir reads the migrations at the top of fsys the way goose's Provider will, but
// strictly: goose silently skips *.sql files without a version, which would hide a
// misnamed migration. dir names the directory in messages. Errors are
// *RefusalError (ErrNoMigrations, ErrBadMigrationFiles) or I/O errors.
func ScanDir(fsys fs.FS, dir string) (Sources, error) {
	src, _, err := scanDir(fsys, dir)
	return src, err
}

// scanDir is ScanDir that also returns the files it read, by name.
func scanDir(fsys fs.FS, dir string) (Sources, map[string][]byte, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, nil, fmt.Errorf("reading migration directory %s: %w", dir, err)
	}
	var (
		out      Sources
		problems []string
		byVer    = map[int64]string{}
		contents = map[string][]byte{}
	)
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			continue
		}
		switch {
		case strings.HasSuffix(name, "_test.go"):
			continue
		case path.Ext(name) == ".go":
			problems = append(problems, fmt.Sprintf("%s is a Go migration, which this step cannot run (SQL migrations only)", name))
			continue
		case path.Ext(name) != ".sql":
			continue
		}
		v, err := goose.NumericComponent(name)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s does not start with a version ≥ 1 and '_'", name))
			continue
		}
		if prev, ok := byVer[v]; ok {
			problems = append(problems, fmt.Sprintf("%s and %s both have version %d", prev, name, v))
			continue
		}
		byVer[v] = name
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, nil, fmt.Errorf("reading migration %s/%s: %w", dir, name, err)
		}
		contents[name] = b
		src, ok := parseAnnotations(b)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s has no '-- +goose Up' annotation", name))
			continue
		}
		src.Version, src.File = v, name
		out = append(out, src)
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, nil, refuse(ErrBadMigrationFiles,
			"Fix the files in the image: name each <version>_<name>.sql with a unique version ≥ 1 and start it with '-- +goose Up'; move other .sql files out of the directory",
			"the migration directory %s is not valid: %s", dir, strings.Join(problems, "; "))
	}
	if len(out) == 0 {
		return nil, nil, refuse(ErrNoMigrations,
			"Point --dir at the directory holding the <version>_<name>.sql files (the image has them in "+DefaultDir+")",
			"no migrations (*.sql) in %s", dir)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, contents, nil
}

// parseAnnotations finds the goose annotations that matter before running: Up (goose
// rejects a file without it), a Down section with statements, NO TRANSACTION. It
// follows goose's rule: an annotation line starts with "--" and contains "+goose".
// Lines are cut from b in place: a bufio.Scanner's buffer per file was most of the
// garbage a --plan run made.
func parseAnnotations(b []byte) (src Source, hasUp bool) {
	inDown := false
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		// Where the scanner used here before gave up (bufio.ErrTooLong), and with it the
		// rest of the file; goose itself refuses far shorter lines.
		if len(line) >= maxAnnotationLine {
			break
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if bytes.HasPrefix(line, dashes) && bytes.Contains(line, gooseMark) {
			cmd := bytes.TrimSpace(bytes.Replace(bytes.ReplaceAll(line, dashes, nil), gooseMark, nil, 1))
			switch {
			case bytes.EqualFold(cmd, []byte("Up")):
				hasUp, inDown = true, false
			case bytes.EqualFold(cmd, []byte("Down")):
				inDown = true
			case bytes.EqualFold(cmd, []byte("NO TRANSACTION")):
				src.NoTx = true
			}
			continue
		}
		if inDown && !src.HasDown {
			if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 && !bytes.HasPrefix(trimmed, dashes) {
				src.HasDown = true
			}
		}
	}
	return src, hasUp
}

const maxAnnotationLine = 16 << 20

var (
	dashes    = []byte("--")
	gooseMark = []byte("+goose")
)

// readFS serves the files ScanDir read from memory and everything else from the
// directory: goose opens each migration twice to parse it (once per direction),
// and then reads the very bytes that were checked.
type readFS struct {
	fs.FS
	files map[string][]byte
}

func (r readFS) Open(name string) (fs.File, error) {
	if b, ok := r.files[name]; ok {
		return &memFile{Reader: bytes.NewReader(b), fsys: r.FS, name: name}, nil
	}
	return r.FS.Open(name)
}

type memFile struct {
	*bytes.Reader
	fsys fs.FS
	name string
}

// Stat asks the directory: goose never calls it.
func (f *memFile) Stat() (fs.FileInfo, error) { return fs.Stat(f.fsys, f.name) }
func (f *memFile) Close() error               { return nil }
