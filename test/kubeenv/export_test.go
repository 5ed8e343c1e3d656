package kubeenv

// FailAfter makes Start fail right after the named step (tests of the
// half-started teardown).
func FailAfter(o *Options, step string) { o.failAfter = step }
