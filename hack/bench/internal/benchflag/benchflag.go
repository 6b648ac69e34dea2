// Package benchflag reads the flags the benchmark commands under hack/bench
// share.
package benchflag

import (
	"fmt"
	"strconv"
	"strings"
)

// Counts reads a comma-separated list of positive counts, each a number
// with an optional k (thousand) or M (million) suffix, as "1k,10k,1M". flag
// and noun name the flag and what is counted in the error.
func Counts(flag, noun, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		mult := 1
		switch {
		case strings.HasSuffix(f, "k"):
			mult, f = 1000, strings.TrimSuffix(f, "k")
		case strings.HasSuffix(f, "M"):
			mult, f = 1000000, strings.TrimSuffix(f, "M")
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-%s: %q is not a positive number of %s", flag, f, noun)
		}
		out = append(out, n*mult)
	}
	return out, nil
}
