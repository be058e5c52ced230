package ffmpeg_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/converter/internal/ffmpeg"
)

// block is one update of ffmpeg's -progress output.
func block(outTimeUS int, state string) string {
	return "bitrate=128.0kbits/s\nout_time_us=" + strconv.Itoa(outTimeUS) + "\nout_time=00:00:00.000000\nspeed=50x\nprogress=" + state + "\n"
}

func TestParseProgress(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		input    string
		duration time.Duration
		step     time.Duration // the clock advances this much per report
		want     []int
	}{
		{"EveryBlockOncePerSecond", block(1_000_000, "continue") + block(5_000_000, "continue") + block(10_000_000, "end"),
			10 * time.Second, time.Second, []int{10, 50, 100}},
		{"ThrottledWithinASecond", block(1_000_000, "continue") + block(2_000_000, "continue") + block(3_000_000, "continue") + block(10_000_000, "end"),
			10 * time.Second, 300 * time.Millisecond, []int{10, 100}},
		{"BeyondDurationIs99UntilEnd", block(12_000_000, "continue") + block(12_500_000, "end"),
			10 * time.Second, time.Second, []int{99, 100}},
		{"NegativeAndGarbageIgnored", "out_time_us=-5\nnonsense\n=\nprogress=continue\n" + block(5_000_000, "end"),
			10 * time.Second, time.Second, []int{0, 100}},
		{"OldOutTimeMsKey", "out_time_ms=2500000\nprogress=continue\n", 10 * time.Second, time.Second, []int{25}},
		// Without a duration there is no percentage on the way, but the end is 100.
		{"UnknownDurationOnlyTheEnd", block(500_000, "continue") + block(1_000_000, "end"), 0, time.Second, []int{100}},
		{"Empty", "", 10 * time.Second, time.Second, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := start
			clock := func() time.Time { now = now.Add(tc.step); return now }
			var got []int
			_ = ffmpeg.ParseProgress(strings.NewReader(tc.input), tc.duration, time.Second, clock, func(p int) { got = append(got, p) })
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseProgressReturnsTheOutputDuration(t *testing.T) {
	input := block(1_000_000, "continue") + block(60_024_979, "end")
	for _, fn := range []func(int){nil, func(int) {}} {
		if got := ffmpeg.ParseProgress(strings.NewReader(input), 0, time.Second, time.Now, fn); got != 60024979*time.Microsecond {
			t.Fatalf("got %s, want 1m0.024979s", got)
		}
	}
}

func FuzzParseProgress(f *testing.F) {
	f.Add(block(1_000_000, "continue")+block(10_000_000, "end"), int64(10*time.Second))
	f.Add("out_time_us=99999999999999999999\nprogress=continue\n", int64(time.Second))
	f.Fuzz(func(t *testing.T, input string, duration int64) {
		pos := ffmpeg.ParseProgress(strings.NewReader(input), time.Duration(duration), time.Second, time.Now, func(p int) {
			if p < 0 || p > 100 {
				t.Fatalf("percent %d out of range", p)
			}
		})
		if pos < 0 {
			t.Fatalf("position %s", pos)
		}
	})
}
