package broker

import (
	"testing"
	"time"
)

func TestRetryDelayGrowsToTheCap(t *testing.T) {
	fixed := QueueSpec{RetryDelay: time.Second, MaxRetryDelay: time.Second}
	growing := QueueSpec{RetryDelay: time.Second, MaxRetryDelay: 10 * time.Second}
	for _, tc := range []struct {
		spec    QueueSpec
		attempt int
		want    time.Duration
	}{
		{fixed, 1, time.Second}, {fixed, 5, time.Second},
		{growing, 1, time.Second}, {growing, 2, 2 * time.Second}, {growing, 3, 4 * time.Second},
		{growing, 4, 8 * time.Second}, {growing, 5, 10 * time.Second}, {growing, 500, 10 * time.Second},
	} {
		if got := tc.spec.retryDelay(tc.attempt); got != tc.want {
			t.Errorf("retryDelay(%d) with %v..%v = %v, want %v", tc.attempt, tc.spec.RetryDelay, tc.spec.MaxRetryDelay, got, tc.want)
		}
	}
}
