package waitdb

import (
	"strings"
	"testing"
	"time"
)

func TestValidateTimeout(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second, time.Millisecond, 25 * time.Hour} {
		err := (&Options{Timeout: d}).Validate()
		if err == nil || !strings.Contains(err.Error(), "--timeout") {
			t.Errorf("timeout %s: %v", d, err)
		}
	}
	if err := (&Options{Timeout: 5 * time.Minute}).Validate(); err != nil {
		t.Error(err)
	}
}
