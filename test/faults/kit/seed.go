package kit

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

// Seed makes a suite's random choices reproducible: CHARTREUSE_FAULT_SEED, else a
// fixed default. It logs the seed it used.
func Seed(t testing.TB) uint64 {
	t.Helper()
	s := uint64(20260408)
	if v := os.Getenv("CHARTREUSE_FAULT_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CHARTREUSE_FAULT_SEED=%q: %v", v, err)
		}
		s = n
	}
	t.Logf("seed %d (set CHARTREUSE_FAULT_SEED to replay another)", s)
	return s
}

// NewRand is the generator for a seed from Seed.
func NewRand(s uint64) *rand.Rand { return rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15)) }
