package store

import (
	"strings"
	"unicode/utf8"

	"github.com/audiomill/audiomill/platform/errs"
)

// Limits of names and paths.
const (
	MaxPathBytes    = 1024 // a whole path
	MaxSegmentBytes = 255  // one segment (a file system's NAME_MAX)
	MaxDepth        = 32   // segments in a path
	MaxBucketBytes  = 63
)

// ValidateBucket checks a bucket name: 1–63 characters of [a-z0-9_-],
// starting with a letter or digit. errs.Invalid otherwise.
func ValidateBucket(name string) error {
	if name == "" || len(name) > MaxBucketBytes {
		return errs.E(errs.Invalid, "bucket name must be 1-%d characters", MaxBucketBytes)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '-' || c == '_')
		if !ok {
			return errs.E(errs.Invalid, "bucket name %q must be lowercase letters, digits, '-' and '_', starting with a letter or digit", name)
		}
	}
	return nil
}

// ValidatePath checks a file path inside a bucket: valid UTF-8 of at most
// MaxPathBytes, "/"-separated segments (at most MaxDepth, each at most
// MaxSegmentBytes), none empty, "." or "..", no control characters and no
// backslash. So a valid path never leaves its bucket on any backend.
// errs.Invalid otherwise.
func ValidatePath(p string) error {
	if p == "" {
		return errs.E(errs.Invalid, "path is empty")
	}
	if len(p) > MaxPathBytes {
		return errs.E(errs.Invalid, "path is longer than %d bytes", MaxPathBytes)
	}
	if !utf8.ValidString(p) {
		return errs.E(errs.Invalid, "path is not valid UTF-8")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return errs.E(errs.Invalid, "path contains a control character")
		}
		if r == '\\' {
			return errs.E(errs.Invalid, "path contains a backslash")
		}
	}
	depth := 0
	for seg := range strings.SplitSeq(p, "/") {
		depth++
		switch {
		case seg == "":
			return errs.E(errs.Invalid, "path has an empty segment (leading, trailing or double '/')")
		case seg == "." || seg == "..":
			return errs.E(errs.Invalid, "path has a %q segment", seg)
		case len(seg) > MaxSegmentBytes:
			return errs.E(errs.Invalid, "path segment is longer than %d bytes", MaxSegmentBytes)
		}
	}
	if depth > MaxDepth {
		return errs.E(errs.Invalid, "path is deeper than %d segments", MaxDepth)
	}
	return nil
}

// ValidatePrefix checks a listing prefix: empty, or a path optionally
// followed by "/". errs.Invalid otherwise.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := ValidatePath(strings.TrimSuffix(prefix, "/")); err != nil {
		return errs.Wrap(err, errs.Invalid, "prefix: %s", errs.MessageOf(err))
	}
	return nil
}

// ValidateListOptions checks opts and applies the default and maximum limit.
func ValidateListOptions(opts *ListOptions) error {
	if err := ValidatePrefix(opts.Prefix); err != nil {
		return err
	}
	if opts.Delimiter != "" && opts.Delimiter != "/" {
		return errs.E(errs.Invalid, "delimiter must be empty or \"/\"")
	}
	switch {
	case opts.Limit <= 0:
		opts.Limit = DefaultListLimit
	case opts.Limit > MaxListLimit:
		opts.Limit = MaxListLimit
	}
	return nil
}

// Listing limits.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)
