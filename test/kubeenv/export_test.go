package kubeenv

// FailAfter makes Start fail right after the named step (tests of the
// half-started teardown).
func FailAfter(o *Options, step string) { o.failAfter = step }

// KeepLockOnFailure makes a failed Start keep the lock, so that a test can
// check the machine before another environment may start.
func KeepLockOnFailure(o *Options) { o.keepLock = true }

// StopKeepingLock tears the environment down but keeps the lock until
// release is called.
func StopKeepingLock(e *Env) (release func() error, err error) {
	err = e.stopWith(false)
	return func() error { return releaseLock(e.lockFile, e.st.Dir) }, err
}

// ReleaseLock releases the default lock if it names dir.
func ReleaseLock(dir string) error { return releaseLock(DefaultLockFile, dir) }
