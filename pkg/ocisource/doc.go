// Package ocisource gets the files of one directory of an image (or OCI artifact) in
// a registry, built on go-containerregistry, so that migrations can ship in a
// data-only image apart from the image holding the step binaries: Resolve turns a
// tag into a manifest digest once per run (one HEAD), and every step then calls
// Fetch with that digest, so plan, migrate, recheck and rollback read the same
// files even if the tag moves.
//
// Fetch pulls the manifest by digest (for an index, the linux/GOARCH manifest, or
// the only one), applies the layers in order with OCI whiteouts (.wh.<name>,
// .wh..wh..opq), and writes only the regular files under the directory asked for;
// the rest of each layer is read and dropped. A layer with an
// org.opencontainers.image.title annotation is one file at that path (oras push).
// Every blob is checked against its digest. What could escape the directory or
// fill the disk or the memory is refused: "..", a link out of it, a device, more
// than 256 MiB or 100,000 entries, a zstd layer whose window is over 32 MiB.
//
// Errors carry their exit code (pkg/failure): an unknown image, refused
// credentials, a missing directory, a corrupt blob or refused content are
// permanent (1); a bad reference or Secret is a usage error (2); an unreachable
// registry, a dropped connection, a timeout, a 5xx or 429 answer, a registry that
// sends nothing for 2 minutes (before or within an answer) is transient (75).
// There are no retries inside: the workflow retries the step. Plain http is used
// only with Insecure, or for a registry on the loopback interface. Credentials come
// from a mounted kubernetes.io/dockerconfigjson Secret (LoadAuth) and never appear
// in an error or when an Auth is printed.
package ocisource
