package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseAge reads how far back an operation reaches: a Go duration (90m,
// 24h) or a number of days (7d).
func ParseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%q: want a positive number of days such as 7d", s)
		}
		return time.Duration(n * 24 * float64(time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration such as 90m, 24h or 7d", s)
	}
	return d, nil
}

// ParseWhen reads a point in time: RFC 3339 (2026-01-02T15:04:05Z), or a
// local date and time (2026-01-02 15:04, 2026-01-02).
func ParseWhen(s string, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("want RFC 3339 (2026-01-02T15:04:05Z) or a local time such as \"2026-01-02 15:04\" or 2026-01-02")
}
