package engines

import (
	"path"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/chartreuse-go/chartreuse/images/build"
)

// MigrationSets are goose SQL migration directories: set name → file name →
// content.
type MigrationSets map[string]map[string]string

// WithMigrationSets derives an image from the product image base
// (images/build.Image): one more layer holding each set at
// /migrations/<set>/<file> (files 0644, directories 0755, root-owned, readable
// by the steps' user 65532), like `COPY` in an application's Dockerfile. A run
// picks its set with the Pipeline's migrations-dir param.
func WithMigrationSets(base v1.Image, sets MigrationSets) (v1.Image, error) {
	names := make([]string, 0, len(sets))
	for s := range sets {
		names = append(names, s)
	}
	sort.Strings(names)
	entries := []build.Entry{{Path: build.MigrationsDir, Dir: true, Mode: 0o755}}
	for _, s := range names {
		dir := path.Join(build.MigrationsDir, s)
		entries = append(entries, build.Entry{Path: dir, Dir: true, Mode: 0o755})
		files := make([]string, 0, len(sets[s]))
		for f := range sets[s] {
			files = append(files, f)
		}
		sort.Strings(files)
		for _, f := range files {
			entries = append(entries, build.Entry{Path: path.Join(dir, f), Data: []byte(sets[s][f]), Mode: 0o644})
		}
	}
	return build.AppendEntries(base, "COPY migration sets to /migrations/<set>/ (chartreuse tests)", entries)
}
