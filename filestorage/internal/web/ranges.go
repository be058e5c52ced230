package web

import (
	"errors"
	"strconv"
	"strings"
)

// Range is a satisfiable byte range of a file.
type Range struct {
	Start, Length int64
}

// Errors of ParseRange.
var (
	// ErrUnsatisfiable: the range is well-formed but lies outside the file (416).
	ErrUnsatisfiable = errors.New("range not satisfiable")
	// ErrIgnoredRange: the header is malformed or asks for several ranges;
	// the server ignores it and sends the whole file (RFC 9110 §14.2).
	ErrIgnoredRange = errors.New("range ignored")
)

// ParseRange parses a Range header holding one byte range ("bytes=0-99",
// "bytes=100-", "bytes=-500") against a file of size bytes.
func ParseRange(header string, size int64) (Range, error) {
	unit, spec, ok := strings.Cut(header, "=")
	if !ok || strings.TrimSpace(unit) != "bytes" {
		return Range{}, ErrIgnoredRange
	}
	spec = strings.TrimSpace(spec)
	if spec == "" || strings.Contains(spec, ",") {
		return Range{}, ErrIgnoredRange
	}
	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		return Range{}, ErrIgnoredRange
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	if first == "" {
		// A suffix: the last n bytes.
		n, err := parseDigits(last)
		if err != nil {
			return Range{}, ErrIgnoredRange
		}
		if n == 0 || size == 0 {
			return Range{}, ErrUnsatisfiable
		}
		n = min(n, size)
		return Range{Start: size - n, Length: n}, nil
	}
	start, err := parseDigits(first)
	if err != nil {
		return Range{}, ErrIgnoredRange
	}
	end := size - 1
	if last != "" {
		e, err := parseDigits(last)
		if err != nil || e < start {
			return Range{}, ErrIgnoredRange
		}
		end = min(e, size-1)
	}
	if start >= size {
		return Range{}, ErrUnsatisfiable
	}
	return Range{Start: start, Length: end - start + 1}, nil
}

func parseDigits(s string) (int64, error) {
	if s == "" || len(s) > 18 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New("not a number")
	}
	return strconv.ParseInt(s, 10, 64)
}
