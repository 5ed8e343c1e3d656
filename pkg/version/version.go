package version

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// Version is stamped at build time:
//
//	-ldflags "-X github.com/chartreuse-go/chartreuse/pkg/version.Version=0.1.0"
var Version = "0.0.0-dev"

// MajorMinor parses "v1.2.3", "1.2", "1.2.3-rc.1" into its major and minor numbers.
func MajorMinor(v string) (major, minor int, err error) {
	s := strings.TrimPrefix(strings.TrimSpace(v), "v")
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, 0, fmt.Errorf("version %q is not of the form MAJOR.MINOR[.PATCH]", v)
	}
	nums := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p == "" {
			return 0, 0, fmt.Errorf("version %q is not of the form MAJOR.MINOR[.PATCH]", v)
		}
		nums[i] = n
	}
	return nums[0], nums[1], nil
}

// Check compares the manifests' version with the binary's. An empty manifest version
// is a usage error unless skip is set, so a template that forgets to pass it fails
// loudly; a different major.minor is a permanent error naming both versions.
func Check(binary, manifest string, skip bool) error {
	if skip {
		return nil
	}
	if manifest == "" {
		return failure.Usagef("--manifest-version is required: set it to the version of the workflow manifests (or pass --skip-version-check when running by hand)")
	}
	bMaj, bMin, err := MajorMinor(binary)
	if err != nil {
		return failure.Permanentf("binary version: %w", err)
	}
	mMaj, mMin, err := MajorMinor(manifest)
	if err != nil {
		return failure.Permanentf("--manifest-version: %w", err)
	}
	if bMaj != mMaj || bMin != mMin {
		return failure.Permanentf("version mismatch: manifests are %s but this binary is %s; major.minor must match — deploy the image built for these manifests", manifest, binary)
	}
	return nil
}
