package migrate

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
)

// Parsed is one migration file in one direction as goose would run it.
type Parsed struct {
	Statements []string // in order, exactly as goose would send them (ENVSUB expanded)
	UseTx      bool     // goose would run them in one transaction
	SHA256     string   // of the file's bytes the statements were parsed from
}

// parseMigration returns the statements goose would run for file in one direction.
//
// goose's SQL parser is internal to goose, so the statements are obtained by
// running goose's own Provider, with versioning off, on a database/sql driver
// that records what it is asked to execute instead of executing it: the split,
// the annotations and ENVSUB are goose's, not an imitation that could drift. Only
// file is visible to goose, so parsing one migration reads one file.
func parseMigration(ctx context.Context, fsys fs.FS, file string, version int64, up bool) (*Parsed, error) {
	rec := &stmtRecorder{}
	db := sql.OpenDB(rec)
	defer db.Close()
	sum := &fileSum{}
	p, err := goose.NewProvider(goose.DialectPostgres, db, oneFileFS{fsys, file, sum},
		goose.WithDisableVersioning(true), goose.WithDisableGlobalRegistry(true), goose.WithAllowOutofOrder(true))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if _, err := p.ApplyVersion(ctx, version, up); err != nil {
		// goose wraps the parser's error in its own context ("failed to prepare
		// migration ..."), which names the file already.
		var pe *goose.PartialError
		if errors.As(err, &pe) && pe.Err != nil {
			err = pe.Err
		}
		return nil, err
	}
	return &Parsed{Statements: rec.stmts, UseTx: rec.began, SHA256: sum.String()}, nil
}

// oneFileFS shows goose one file of the migration directory, hashing what goose
// reads of it.
type oneFileFS struct {
	fsys fs.FS
	name string
	sum  *fileSum
}

func (o oneFileFS) Open(name string) (fs.File, error) {
	switch name {
	case ".":
		return &oneFileDir{o}, nil
	case o.name:
		f, err := o.fsys.Open(name)
		if err != nil || o.sum == nil {
			return f, err
		}
		return &summedFile{File: f, h: sha256.New(), sum: o.sum}, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

// ReadDir implements fs.ReadDirFS, which fs.Glob uses.
func (o oneFileFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if name != "." {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	info, err := fs.Stat(o.fsys, o.name)
	if err != nil {
		return nil, err
	}
	return []fs.DirEntry{fs.FileInfoToDirEntry(info)}, nil
}

// fileSum collects the sha256 of each opening of the file, streamed (the file
// is never held whole for it). goose opens it once per direction, at the same
// time.
type fileSum struct {
	mu   sync.Mutex
	sums []string
}

// String is the file's sha256 if every opening read the same bytes, else "".
func (s *fileSum) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sums) == 0 {
		return ""
	}
	for _, x := range s.sums[1:] {
		if x != s.sums[0] {
			return ""
		}
	}
	return s.sums[0]
}

// summedFile writes every byte read to h and, on Close, the bytes not read,
// so that its sum is of the whole file however far goose's parser read.
type summedFile struct {
	fs.File
	h   hash.Hash
	sum *fileSum
}

func (f *summedFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	f.h.Write(p[:n])
	return n, err
}

func (f *summedFile) Close() error {
	_, err := io.Copy(f.h, f.File)
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		f.sum.mu.Lock()
		f.sum.sums = append(f.sum.sums, hex.EncodeToString(f.h.Sum(nil)))
		f.sum.mu.Unlock()
	}
	return err
}

type oneFileDir struct{ o oneFileFS }

func (d *oneFileDir) Stat() (fs.FileInfo, error) { return dirInfo{}, nil }
func (d *oneFileDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: ".", Err: errors.New("is a directory")}
}
func (d *oneFileDir) Close() error { return nil }
func (d *oneFileDir) ReadDir(n int) ([]fs.DirEntry, error) {
	entries, err := d.o.ReadDir(".")
	if err != nil || n <= 0 {
		return entries, err
	}
	return entries, io.EOF
}

type dirInfo struct{}

func (dirInfo) Name() string       { return "." }
func (dirInfo) Size() int64        { return 0 }
func (dirInfo) Mode() fs.FileMode  { return fs.ModeDir | 0o555 }
func (dirInfo) ModTime() time.Time { return time.Time{} }
func (dirInfo) IsDir() bool        { return true }
func (dirInfo) Sys() any           { return nil }

// stmtRecorder is a database/sql connector whose connections record statements.
type stmtRecorder struct {
	stmts []string
	began bool
}

func (r *stmtRecorder) Connect(context.Context) (driver.Conn, error) { return &stmtRecordConn{r}, nil }
func (r *stmtRecorder) Driver() driver.Driver                        { return stmtRecordDriver{} }

type stmtRecordDriver struct{}

func (stmtRecordDriver) Open(string) (driver.Conn, error) {
	return nil, errors.New("the recording driver opens through its connector only")
}

type stmtRecordConn struct{ r *stmtRecorder }

func (c *stmtRecordConn) Prepare(query string) (driver.Stmt, error) {
	return nil, fmt.Errorf("recording driver: unexpected prepare of %q", firstLine(query))
}
func (c *stmtRecordConn) Close() error              { return nil }
func (c *stmtRecordConn) Begin() (driver.Tx, error) { c.r.began = true; return stmtRecordTx{}, nil }
func (c *stmtRecordConn) BeginTx(context.Context, driver.TxOptions) (driver.Tx, error) {
	return c.Begin()
}
func (c *stmtRecordConn) ExecContext(_ context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if len(args) > 0 {
		return nil, fmt.Errorf("recording driver: unexpected arguments for %q", firstLine(query))
	}
	c.r.stmts = append(c.r.stmts, query)
	return driver.RowsAffected(0), nil
}

type stmtRecordTx struct{}

func (stmtRecordTx) Commit() error   { return nil }
func (stmtRecordTx) Rollback() error { return nil }

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}

// usesEnvsub reports whether a migration file turns on ENVSUB, so that its
// expanded statements must never be printed.
func usesEnvsub(fsys fs.FS, file string) bool {
	f, err := fsys.Open(path.Clean(file))
	if err != nil {
		return false
	}
	defer f.Close()
	found := false
	_ = eachLine(f, func(line []byte) bool {
		if isAnnotation(line) && strings.EqualFold(annotationCommand(line), "ENVSUB ON") {
			found = true
			return false
		}
		return true
	})
	return found
}
