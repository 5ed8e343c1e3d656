// Package gitsource gets the files directly in one directory of one commit of a git
// repository, built on go-git: Resolve turns a tag, branch or SHA into a commit SHA
// once per run (one ls-remote), and every step then calls Fetch with that SHA, so
// plan, migrate, recheck and rollback read the same files even if the tag moves.
//
// Fetch is shallow (depth 1), takes no tags and no submodules, and keeps its object
// store on disk. When the server allows it (uploadpack.allowFilter, as on GitHub and
// GitLab), it first takes the commit without any file contents (blob:none) and then
// only the files directly in the directory asked for, so a large repository costs
// its trees and those files, not every file.
//
// A commit that no branch or tag points at any more is asked for by its SHA. Servers
// that refuse that (a tag moved and its old commit is gone, or a server that serves
// only branch and tag tips) get the revision the user named instead, which is accepted
// only if it still points at the same commit; otherwise Fetch fails with *MovedError
// and the run must start again: files of another commit are never used silently.
//
// Errors carry their exit code (pkg/failure): a wrong revision, a missing directory,
// refused credentials or a moved revision are permanent (1); a bad URL or an
// abbreviated SHA is a usage error (2); an unreachable server, a dropped connection, a
// timeout or a 5xx answer is transient (75), and so is a server that stops sending
// (no byte for 2 minutes, or only progress messages for 10: ErrStalled). Credentials come from a mounted Secret
// (LoadAuth) and never appear in an error or when an Auth or Remote is printed.
package gitsource
