package version

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// FuzzMajorMinor: a version string either parses to non-negative numbers that
// read back the same from their canonical spelling (with or without "v", with a
// patch and a pre-release or build suffix), or is refused with a message that
// quotes it.
func FuzzMajorMinor(f *testing.F) {
	for _, s := range []string{"0.1.0", "v1.2.3", "1.2", "1.2.3-rc.1", "1.2.3+build.5", "v0.1", "1", "1.2.3.4", "", "v", "a.b",
		"1..2", "-1.2", "1.-2", "+1.2", "01.02", "99999999999999999999.1", " 1.2 ", "1.2-", "١.٢", "1.2\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		major, minor, err := MajorMinor(s)
		if err != nil {
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", s)) {
				t.Fatalf("MajorMinor(%q): error %q does not quote the value", s, err)
			}
			return
		}
		if major < 0 || minor < 0 {
			t.Fatalf("MajorMinor(%q) = %d.%d", s, major, minor)
		}
		for _, canon := range []string{
			fmt.Sprintf("%d.%d", major, minor), fmt.Sprintf("v%d.%d.7", major, minor),
			fmt.Sprintf("%d.%d.0-rc.1", major, minor), fmt.Sprintf("%d.%d.1+meta", major, minor),
		} {
			ma, mi, err := MajorMinor(canon)
			if err != nil || ma != major || mi != minor {
				t.Fatalf("MajorMinor(%q) = %d.%d, but %q reads as %d.%d, %v", s, major, minor, canon, ma, mi, err)
			}
		}
		if ma, mi, err := MajorMinor("v" + strings.TrimSpace(s)); !strings.HasPrefix(strings.TrimSpace(s), "v") && (err != nil || ma != major || mi != minor) {
			t.Fatalf("a leading v changes %q: %d.%d, %v", s, ma, mi, err)
		}
	})
}

// FuzzCheck: the version check passes exactly when both versions parse with the
// same major.minor; a missing manifest version is a usage error (exit 2) unless
// skipped; any mismatch is permanent (exit 1) and names both versions.
func FuzzCheck(f *testing.F) {
	f.Add("0.1.0", "0.1.7", false)
	f.Add("0.1.0", "0.2.0", false)
	f.Add("0.1.0", "", false)
	f.Add("0.1.0", "", true)
	f.Add("0.0.0-dev", "latest", false)
	f.Fuzz(func(t *testing.T, binary, manifest string, skip bool) {
		err := Check(binary, manifest, skip)
		code := failure.Code(err)
		switch {
		case skip:
			if err != nil {
				t.Fatalf("Check(%q, %q, skip) = %v", binary, manifest, err)
			}
			return
		case manifest == "":
			if code != failure.CodeUsage {
				t.Fatalf("Check(%q, \"\") exit %d, want 2", binary, code)
			}
			return
		}
		bMaj, bMin, berr := MajorMinor(binary)
		mMaj, mMin, merr := MajorMinor(manifest)
		want := berr == nil && merr == nil && bMaj == mMaj && bMin == mMin
		if (err == nil) != want {
			t.Fatalf("Check(%q, %q) = %v, want ok=%v", binary, manifest, err, want)
		}
		if err != nil {
			if code != failure.CodePermanent {
				t.Fatalf("Check(%q, %q) exit %d, want 1", binary, manifest, code)
			}
			if berr == nil && merr == nil && (!strings.Contains(err.Error(), binary) || !strings.Contains(err.Error(), manifest)) {
				t.Fatalf("Check(%q, %q): %q does not name both versions", binary, manifest, err)
			}
		}
	})
}
