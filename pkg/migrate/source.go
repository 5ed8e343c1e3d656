package migrate

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/pressly/goose/v3"
)

// Source is one migration file.
type Source struct {
	Version int64
	File    string // base name, e.g. 00003_add_index.sql
	HasDown bool   // has a '-- +goose Down' section with at least one statement
	NoTx    bool   // '-- +goose NO TRANSACTION'
	SHA256  string // hex sha256 of the file's bytes, as sha256sum prints it
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

// Digest is the sha256 of the migrations up to and including version upTo, one
// line each of version, sha256 and name: plan reports it (result files-digest),
// and migrate given it (--planned-files-digest) refuses to apply anything when its
// own files differ. Files above upTo do not count: migrate stops at plan's target.
func (s Sources) Digest(upTo int64) string {
	h := sha256.New()
	for _, m := range s {
		if m.Version > upTo {
			break
		}
		fmt.Fprintf(h, "%d %s %s\n", m.Version, m.SHA256, m.File)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Latest is the highest version, 0 when there is none.
func (s Sources) Latest() int64 {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1].Version
}

// UnreadSubdirs lists the subdirectories of the migration directory that hold
// files named like migrations (<version>_<name>.sql), with one of them each:
// goose reads only the directory itself, so those never run, without a word.
// A subdirectory may be kept on purpose (an archive of squashed migrations), so
// the caller warns rather than refuses.
func UnreadSubdirs(fsys fs.FS) []string {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil // ScanDir reports it
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		inner, err := fs.ReadDir(fsys, e.Name())
		if err != nil {
			continue
		}
		for _, f := range inner {
			if _, err := goose.NumericComponent(f.Name()); err == nil && !f.IsDir() && path.Ext(f.Name()) == ".sql" {
				out = append(out, e.Name()+"/"+f.Name())
				break
			}
		}
	}
	return out
}

// ScanDir reads the migrations at the top of fsys the way goose's Provider will, but
// strictly: goose silently skips *.sql files without a version, which would hide a
// misnamed migration. dir names the directory in messages. Errors are
// *RefusalError (ErrNoMigrations, ErrBadMigrationFiles) or I/O errors.
//
// Each file is streamed line by line for its annotations, hashed on the way
// (Source.SHA256), and nothing of it is kept, so memory does not grow with the number or size of the migrations.
func ScanDir(fsys fs.FS, dir string) (Sources, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("reading migration directory %s: %w", dir, err)
	}
	var (
		out      Sources
		problems []string
		byVer    = map[int64]string{}
		buf      = make([]byte, 64*1024) // shared by every file's scanner
		h        = sha256.New()
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
		case path.Ext(name) != ".sql" && strings.EqualFold(path.Ext(name), ".sql"):
			// goose (and so this step) reads only ".sql": left alone, the file
			// would never run, without a word.
			problems = append(problems, fmt.Sprintf("%s ends in %s, which goose does not read as a migration: rename it to end in .sql", name, path.Ext(name)))
			continue
		case path.Ext(name) != ".sql" && strings.EqualFold(path.Ext(strings.TrimRightFunc(name, unicode.IsSpace)), ".sql"):
			// "2_b.sql " (a blank typed after the name): never read, without a word.
			problems = append(problems, fmt.Sprintf("%q ends in white space after .sql, so goose does not read it as a migration: rename it to end in .sql", name))
			continue
		case path.Ext(name) != ".sql":
			continue
		}
		if !utf8.ValidString(name) {
			// io/fs opens no such path ("invalid argument"), and PostgreSQL
			// would not store it in the records either.
			problems = append(problems, fmt.Sprintf("%q is not a valid UTF-8 name (written with another encoding, e.g. Latin-1): rename it", name))
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
		f, err := fsys.Open(name)
		if err != nil {
			return nil, fmt.Errorf("reading migration %s/%s: %w", dir, name, err)
		}
		// The checksum is of every byte of the file, hashed as the scanner reads
		// it, and the rest (after a line too long to scan) drained into the hash:
		// the file is read once and never held whole.
		h.Reset()
		tee := io.TeeReader(f, h)
		src, ok, err := scanAnnotations(tee, buf)
		if err == nil {
			_, err = io.Copy(io.Discard, tee)
		}
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading migration %s/%s: %w", dir, name, err)
		}
		if !ok {
			if startsWithBOM(fsys, name) {
				problems = append(problems, fmt.Sprintf("%s starts with a UTF-8 byte order mark (EF BB BF), so goose does not see its '-- +goose Up' annotation: save it without one", name))
			} else {
				problems = append(problems, fmt.Sprintf("%s has no '-- +goose Up' annotation", name))
			}
			continue
		}
		src.Version, src.File, src.SHA256 = v, name, hex.EncodeToString(h.Sum(nil))
		out = append(out, src)
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, refuse(ErrBadMigrationFiles,
			"Fix the files in the image: name each <version>_<name>.sql with a unique version ≥ 1 and start it with '-- +goose Up'; move other .sql files out of the directory",
			"the migration directory %s is not valid: %s", dir, strings.Join(problems, "; "))
	}
	if len(out) == 0 {
		return nil, refuse(ErrNoMigrations,
			"Point --dir at the directory holding the <version>_<name>.sql files (the image has them in "+DefaultDir+")",
			"no migrations (*.sql) in %s", dir)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// parseAnnotations is scanAnnotations over bytes in memory.
func parseAnnotations(b []byte) (src Source, hasUp bool) {
	src, hasUp, _ = scanAnnotations(bytes.NewReader(b), nil)
	return src, hasUp
}

// scanAnnotations finds the goose annotations that matter before running: Up
// (goose rejects a file without it), a Down section with statements, NO
// TRANSACTION. It follows goose's rule: an annotation line starts with "--" and
// contains "+goose". buf, when not nil, is the scanner's starting buffer, reused
// from file to file. Only I/O errors are returned.
func scanAnnotations(r io.Reader, buf []byte) (src Source, hasUp bool, err error) {
	inDown := false
	err = eachLineBuf(r, buf, func(line []byte) bool {
		if isAnnotation(line) {
			switch cmd := annotationCommand(line); {
			case strings.EqualFold(cmd, "Up"):
				hasUp, inDown = true, false
			case strings.EqualFold(cmd, "Down"):
				inDown = true
			case strings.EqualFold(cmd, "NO TRANSACTION"):
				src.NoTx = true
			}
			return true
		}
		if inDown && !src.HasDown {
			if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 && !bytes.HasPrefix(trimmed, dashes) {
				src.HasDown = true
			}
		}
		return true
	})
	return src, hasUp, err
}

func isAnnotation(line []byte) bool {
	return bytes.HasPrefix(line, dashes) && bytes.Contains(line, gooseMark)
}

// annotationCommand is what follows "-- +goose", e.g. "Up" or "NO TRANSACTION".
func annotationCommand(line []byte) string {
	return string(bytes.TrimSpace(bytes.Replace(bytes.ReplaceAll(line, dashes, nil), gooseMark, nil, 1)))
}

// eachLine calls fn with each line of r (without its line ending) until fn
// returns false. A line of maxAnnotationLine bytes or more ends the scan, where
// goose's own parser gives up too.
func eachLine(r io.Reader, fn func(line []byte) bool) error { return eachLineBuf(r, nil, fn) }

func eachLineBuf(r io.Reader, buf []byte, fn func(line []byte) bool) error {
	sc := bufio.NewScanner(r)
	if buf == nil {
		buf = make([]byte, 0, 4096)
	}
	sc.Buffer(buf[:0], maxAnnotationLine)
	for sc.Scan() {
		if !fn(sc.Bytes()) {
			return nil
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return err
	}
	return nil
}

const maxAnnotationLine = 16 << 20

var (
	dashes    = []byte("--")
	gooseMark = []byte("+goose")
)

// startsWithBOM reports whether the file starts with a UTF-8 byte order mark,
// which some editors write and goose does not skip.
func startsWithBOM(fsys fs.FS, name string) bool {
	f, err := fsys.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 3)
	n, _ := io.ReadFull(f, b)
	return n == 3 && string(b) == "\ufeff"
}

// fileSHA256 is the hex sha256 of a file's bytes now, as Source.SHA256.
func fileSHA256(fsys fs.FS, name string) (string, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// describeNow says what fileSHA256 found, for a message.
func describeNow(sum string, err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "the file is gone"
	case err != nil:
		return "unreadable: " + err.Error()
	}
	return sum
}
