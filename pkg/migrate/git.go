package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"

	"github.com/chartreuse-go/chartreuse/pkg/gitsource"
	"github.com/chartreuse-go/chartreuse/pkg/redact"
	"github.com/chartreuse-go/chartreuse/pkg/results"
)

// DefaultGitCredentials is where the workflow templates mount the Secret named by
// their git-credentials-secret parameter (optional: absent means anonymous).
const DefaultGitCredentials = "/var/run/chartreuse/git"

// GitOptions take the migrations from a git repository at one commit instead of
// the image. plan resolves --git-revision to a commit and records it (result
// git-commit); every later step of the run is given that commit, so plan,
// migrate, recheck and rollback read the same files even if the tag moves.
//
// --git-commit wins over --git-revision: a step given a commit reads that commit,
// wherever the revision points now, even when the commit is not on the revision's
// history (a tag moved during the run is exactly that case, and the shallow fetch
// has no history to check it against). The revision only helps to reach the commit
// on a server that refuses commits by SHA, and then only while it still points at
// the commit. The log line "migrations from git" names both.
type GitOptions struct {
	URL         string
	Revision    string
	Commit      string
	Credentials string
}

// validateGit checks the git flags together with --dir (relative to the
// repository when --git-url is set). It returns the cleaned directory.
func (o *Options) validateGit() (string, error) {
	g := &o.Git
	if g.URL == "" {
		switch {
		case g.Revision != "":
			return "", fmt.Errorf("--git-revision %q is set but --git-url is empty: give the repository (git-url) or leave the revision empty to use the image's migrations", g.Revision)
		case g.Commit != "":
			return "", errors.New("--git-commit is set but --git-url is empty: give the repository (git-url) the commit belongs to")
		}
		return o.Dir, nil
	}
	if err := (gitsource.Remote{URL: g.URL}).Validate(); err != nil {
		return "", fmt.Errorf("--git-url: %w", err)
	}
	if err := gitsource.ValidateRevision(g.Revision); err != nil {
		return "", fmt.Errorf("--git-revision: %w", err)
	}
	if g.Revision == "" && g.Commit == "" {
		return "", errors.New("--git-revision is empty: give the tag (or branch, or full commit SHA) of --git-url to take the migrations from, e.g. the release tag")
	}
	if g.Commit != "" && !isFullSHA(g.Commit) {
		return "", fmt.Errorf("--git-commit %q is not a full commit SHA (40 hexadecimal digits): pass plan's git-commit result unchanged", g.Commit)
	}
	if path.IsAbs(o.Dir) {
		return "", fmt.Errorf("--dir %s is absolute but the migrations come from --git-url: give their directory inside the repository, e.g. db/migrations (migrations-dir)", o.Dir)
	}
	dir := path.Clean(o.Dir)
	if !fs.ValidPath(dir) {
		return "", fmt.Errorf("--dir %s leaves the repository: give a directory inside it, e.g. db/migrations", o.Dir)
	}
	return dir, nil
}

func isFullSHA(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range strings.ToLower(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// openMigrations returns the migration directory: the image's (--dir) or, with
// --git-url, the files of one commit fetched into a temporary directory that
// cleanup removes. The commit is logged and recorded as the git-commit result.
func (o *Options) openMigrations(ctx context.Context, log *slog.Logger, res *results.Set, red *redact.Redactor) (fsys fs.FS, cleanup func(), err error) {
	if o.Image.Ref != "" {
		res.Set("git-commit", "")
		return o.openImage(ctx, log, res, red)
	}
	res.Set("migrations-digest", "") // always written, as git-commit
	g := o.Git
	if g.URL == "" {
		// Always written: a Tekton task reading a result its step did not
		// write would be skipped.
		res.Set("git-commit", "")
		return os.DirFS(o.Dir), func() {}, nil
	}
	auth, err := gitsource.LoadAuth(g.Credentials)
	if err != nil {
		return nil, nil, fmt.Errorf("git credentials in %s: %w", g.Credentials, err)
	}
	for _, s := range auth.Secrets() {
		red.Add(s)
	}
	// Before any connection: a TMPDIR that cannot be written fails at once.
	tmp, err := newTempDir("chartreuse-git-", "the git fetch")
	if err != nil {
		return nil, nil, err
	}
	cleanup = func() { _ = os.RemoveAll(tmp) }
	remote := gitsource.Remote{URL: g.URL, Auth: auth}
	commit := strings.ToLower(g.Commit)
	if commit == "" {
		if commit, err = remote.Resolve(ctx, g.Revision); err != nil {
			cleanup()
			return nil, nil, err
		}
		log.Info("resolved the git revision for this run", "url", g.URL, "revision", g.Revision, "commit", commit)
	}
	fsys, err = remote.Fetch(ctx, commit, g.Revision, o.Dir, tmp)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	res.Set("git-commit", commit)
	log.Info("migrations from git", "url", g.URL, "revision", g.Revision, "commit", commit, "dir", o.Dir)
	return fsys, cleanup, nil
}
