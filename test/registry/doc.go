// Package registry runs a real OCI registry for tests: Debian's `docker-registry`
// (the CNCF distribution registry 2.8) with filesystem storage in a test's temporary
// directory, deletes enabled, and optional basic authentication from an htpasswd
// file (WithHtpasswd, bcrypt written in Go).
//
// Clients talk to it through a small reverse proxy on the address Start is given
// ("127.0.0.1:0" in unit tests, the cluster bridge's IP and port 0 in end-to-end
// tests), which records every request (Requests) and can make the next ones fail
// (FailNext, FailNextBlob: 503, 429, a dropped connection, a blob cut halfway, a 403
// that echoes the request's credentials, no answer, half an answer and then
// nothing), so that clients' classification of
// failures and masking of secrets are tested against real answers. The
// registry itself listens on a loopback port only; the helpers that write (Push,
// PushImage, PushIndex, Delete) go to it directly, so they never meet an injected
// fault and never show in Requests.
//
// Images are built with go-containerregistry: Push takes one map of files a layer
// (no base image), whose values can also make directories, whiteouts, opaque
// directories, symbolic and hard links, and devices (see Whiteout, Symlink, ...).
package registry
