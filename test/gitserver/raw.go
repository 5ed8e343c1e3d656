package gitserver

import (
	"encoding/hex"
	"testing"
)

// Git object modes of tree entries, as git writes them.
const (
	ModeFile       = "100644"
	ModeExecutable = "100755"
	ModeSymlink    = "120000" // the blob holds the link's target
	ModeSubmodule  = "160000" // the hash is a commit of another repository
	ModeDir        = "40000"
)

// TreeEntry is one entry of a tree made by WriteTree.
type TreeEntry struct {
	Mode string // ModeFile, ModeDir, ...
	Name string // written as it is, even what git itself refuses ("..", "a/b")
	Hash string // 40 hex
}

// WriteBlob stores content as a blob and returns its SHA.
func (r *Repo) WriteBlob(t testing.TB, content string) string {
	t.Helper()
	return r.writeObject(t, "blob", []byte(content))
}

// WriteTree stores a tree of exactly these entries, in this order, without git's
// checks (hash-object --literally): tests can write trees git would refuse to make,
// such as names with '/' or "..", or one name twice.
func (r *Repo) WriteTree(t testing.TB, entries ...TreeEntry) string {
	t.Helper()
	var b []byte
	for _, e := range entries {
		h, err := hex.DecodeString(e.Hash)
		if err != nil || len(h) != 20 {
			t.Fatalf("gitserver: tree entry %q: bad hash %q", e.Name, e.Hash)
		}
		b = append(b, e.Mode+" "+e.Name+"\x00"...)
		b = append(b, h...)
	}
	return r.writeObject(t, "tree", b)
}

// CommitTree makes a commit of tree on main, child of main's tip, and returns its SHA.
func (r *Repo) CommitTree(t testing.TB, tree, msg string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commits++
	return r.commitTree(t, tree, msg)
}

func (r *Repo) writeObject(t testing.TB, kind string, content []byte) string {
	t.Helper()
	out, err := r.s.runInput(r.dir, nil, content, "hash-object", "-t", kind, "--literally", "-w", "--stdin")
	if err != nil {
		t.Fatalf("gitserver: writing a %s: %v", kind, err)
	}
	return out
}

// RevParse is the object rev names, not peeled (rev-parse --verify): "v1^{tag}",
// "HEAD^{tree}".
func (r *Repo) RevParse(t testing.TB, rev string) string {
	t.Helper()
	return r.s.git(t, r.dir, "rev-parse", "--verify", rev)
}
