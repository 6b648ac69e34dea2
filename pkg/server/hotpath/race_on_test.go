//go:build race

package hotpath

// raceEnabled: the race detector instruments the build, which changes frame
// sizes.
const raceEnabled = true
