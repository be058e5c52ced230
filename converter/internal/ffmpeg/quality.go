package ffmpeg

import (
	"fmt"
	"regexp"
	"strconv"
)

// DefaultQuality is the MP3 quality when none is configured: LAME's VBR
// preset V2 (-q:a 2), about 170–210 kbit/s, transparent for most listeners
// at about half the size of 320 kbit/s CBR.
const DefaultQuality = "V2"

var (
	vbrQuality = regexp.MustCompile(`^[Vv]([0-9])$`)
	cbrQuality = regexp.MustCompile(`^([0-9]{2,3})k$`)
)

// Quality is an MP3 encoder setting: VBR "V0"…"V9" (0 best) or CBR
// "32k"…"320k".
type Quality struct {
	args []string
	name string
}

// ParseQuality parses "V0"…"V9" or "<kbps>k" (32–320).
func ParseQuality(s string) (Quality, error) {
	if m := vbrQuality.FindStringSubmatch(s); m != nil {
		return Quality{args: []string{"-q:a", m[1]}, name: "V" + m[1]}, nil
	}
	if m := cbrQuality.FindStringSubmatch(s); m != nil {
		kbps, _ := strconv.Atoi(m[1])
		if kbps >= 32 && kbps <= 320 {
			return Quality{args: []string{"-b:a", m[1] + "k"}, name: s}, nil
		}
	}
	return Quality{}, fmt.Errorf("MP3 quality %q: want V0…V9 (VBR) or 32k…320k (CBR)", s)
}

// String returns the quality as ParseQuality accepts it.
func (q Quality) String() string {
	if q.name == "" {
		return DefaultQuality
	}
	return q.name
}

func (q Quality) encoderArgs() []string {
	if len(q.args) == 0 {
		return []string{"-q:a", "2"}
	}
	return q.args
}
