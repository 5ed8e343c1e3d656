// Package gitserver runs a real git server for tests: bare repositories served over
// smart HTTP by Debian's `git http-backend` (through net/http/cgi), over the git
// protocol by `git daemon --inetd`, and on demand over SSH (StartSSH: x/crypto/ssh's
// server running `git upload-pack`), one child process per request or connection.
//
// Tests build history with the real git command (Repo.Commit, Tag, MoveTag, Branch),
// make repositories private (WithToken: 401 without matching basic auth), turn off
// fetching reachable commits by SHA (AllowReachableSHA1InWant(false)), and make the
// next requests fail (FailNext: 503 or a dropped connection) to check how clients
// classify failures. Every request is recorded (Requests).
//
// Over smart HTTP git's upload-pack is stateless, and a stateless upload-pack serves
// any commit reachable from a branch or tag whatever uploadpack.allowReachableSHA1InWant
// says (the setting then only changes what is advertised). A server that refuses a
// reachable commit that is not a tip is reached through GitURL: git daemon keeps the
// connection and applies the setting as written.
package gitserver
